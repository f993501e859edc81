import Foundation

import Synchronization

/// Named points where a test can make the process die on the spot (SIGKILL), to prove that a
/// crash there loses and doubles nothing. Armed only through the environment:
/// `GATEPOST_FAILPOINTS=deliver.after-link,poll.after-commit@3` (comma-separated; `@N` fires on
/// the N-th time the point is reached, default the first). Unset in production, a check is one
/// test of an empty dictionary read once at start.
public enum FailPoint {
    private static let armed: [String: Int] = {
        guard let value = ProcessInfo.processInfo.environment["GATEPOST_FAILPOINTS"] else { return [:] }
        var points: [String: Int] = [:]
        for item in value.split(separator: ",") {
            let parts = item.trimmingCharacters(in: .whitespaces).split(separator: "@", maxSplits: 1)
            guard let name = parts.first else { continue }
            points[String(name)] = parts.count == 2 ? Int(parts[1]) ?? 1 : 1
        }
        return points
    }()

    private static let hits = Mutex<[String: Int]>([:])

    public static func hit(_ name: String) {
        guard !armed.isEmpty, let target = armed[name] else { return }
        let count = hits.withLock { hits in
            hits[name, default: 0] += 1
            return hits[name, default: 0]
        }
        if count >= target {
            kill(getpid(), SIGKILL)
        }
    }
}
