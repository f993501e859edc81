#if canImport(Glibc)
import Glibc
#endif

/// One poller per spool: `tmp/` is swept at start, which is only safe when no other process is
/// writing there. Held for the life of the process (the kernel drops it if the process dies).
public final class SpoolLock: Sendable {
    private let descriptor: Int32

    public struct Busy: Error, CustomStringConvertible {
        public var path: String
        public var description: String {
            "another gatepost process is polling this spool (lock \(path)); stop it or use another --spool"
        }
    }

    public init(spool: Spool) throws {
        let path = spool.root + "/poll.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw Busy(path: path)
        }
        self.descriptor = descriptor
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
