import Foundation

/// Runs long blocking work on a thread of its own and awaits its result.
///
/// Which work runs where: Swift's concurrency pool has one thread per core (two here), so a
/// blocking call there stalls every task, a poll's reads included. Short blocking calls (a
/// batch's fsyncs, small file operations) go to NIO's thread pool (`NIOThreadPool.singleton`,
/// also one thread per core, shared with NIO's file system); work that can block for seconds
/// (waiting for a child process, copying and fsyncing a delivered file) gets a thread of its
/// own here, so that it never holds up the short work either.
public func offloaded<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try work() })
        }
        thread.start()
    }
}

/// A value handed to another thread and back, whole: the sender does not touch it until it
/// gets it back (``offloaded(_:)`` awaits), so no two threads use it at once, whatever its type.
struct Transferred<Value>: @unchecked Sendable {
    var value: Value
}
