import Foundation
import Synchronization

/// The sites as the engine runs them now, for the console: handed over by the daemon's scheduler
/// at each reload, or, without a daemon (`gatepost serve`), read again from the folder when one
/// of its files changed (looked at once a second at most). A file that breaks keeps its last
/// good version, as in the daemon.
public final class CurrentSites: Sendable {
    private struct State {
        var directory: SiteDirectory
        var fingerprint: Int
        var lookedAt: ContinuousClock.Instant
    }

    private let folder: String?
    private let state: Mutex<State>

    /// Updated by the daemon (``update(_:)``).
    public init(_ directory: SiteDirectory) {
        folder = nil
        state = Mutex(State(directory: directory, fingerprint: 0, lookedAt: .now))
    }

    /// Read from `folder`, and again when it changes.
    public init(watching folder: String) throws {
        self.folder = folder
        let directory = try SiteLoader().loadDirectory(folder)
        state = Mutex(State(directory: directory, fingerprint: Scheduler.fingerprint(folder), lookedAt: .now))
    }

    public func update(_ directory: SiteDirectory) {
        state.withLock { $0.directory = directory }
    }

    public var directory: SiteDirectory {
        guard let folder else { return state.withLock { $0.directory } }
        return state.withLock { state in
            let now = ContinuousClock.now
            guard now - state.lookedAt >= .seconds(1) else { return state.directory }
            state.lookedAt = now
            let fingerprint = Scheduler.fingerprint(folder)
            guard fingerprint != state.fingerprint, let loaded = try? SiteLoader().loadDirectory(folder) else { return state.directory }
            state.fingerprint = fingerprint
            state.directory = SiteReload(previous: state.directory, loaded: loaded).directory
            return state.directory
        }
    }
}
