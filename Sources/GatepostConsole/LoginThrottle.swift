import Foundation
import Synchronization

/// How many wrong passwords a name may take: after `limit` failures within `window`, that name
/// is refused until the window since its first counted failure has passed, whatever the
/// password; a success clears its count. Pure: instants come in, so the rule is tested without
/// waiting.
struct LoginThrottle: Sendable {
    var limit = 5
    var window: TimeInterval = 15 * 60
    /// Per name (lower-cased): the failures still counted, oldest first.
    private var failures: [String: [Date]] = [:]

    /// How long `name` must wait before it may try again at `now`, or nil when it may.
    mutating func wait(for name: String, at now: Date) -> TimeInterval? {
        let key = name.lowercased()
        let recent = (failures[key] ?? []).filter { now.timeIntervalSince($0) < window }
        failures[key] = recent.isEmpty ? nil : recent
        guard recent.count >= limit, let first = recent.first else { return nil }
        return window - now.timeIntervalSince(first)
    }

    mutating func failed(_ name: String, at now: Date) {
        failures[name.lowercased(), default: []].append(now)
        // Bounded: names that nobody has are counted too, so old entries go.
        if failures.count > 10_000 {
            failures = failures.filter { $0.value.contains { now.timeIntervalSince($0) < window } }
        }
    }

    mutating func succeeded(_ name: String) {
        failures[name.lowercased()] = nil
    }
}

/// The throttle shared by the console's requests.
final class SharedLoginThrottle: Sendable {
    private let throttle = Mutex(LoginThrottle())

    func wait(for name: String) -> TimeInterval? { throttle.withLock { $0.wait(for: name, at: Date()) } }
    func failed(_ name: String) { throttle.withLock { $0.failed(name, at: Date()) } }
    func succeeded(_ name: String) { throttle.withLock { $0.succeeded(name) } }
}
