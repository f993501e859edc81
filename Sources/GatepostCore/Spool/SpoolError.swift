/// A spool operation failed. The poll stops, deletes nothing, and reports this.
public struct SpoolError: Error, Sendable, Hashable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var errno: Int32

    public init(_ operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        let hint = errno == ENOSPC ? " (the spool's file system is full)" : errno == EROFS ? " (the spool is read-only)" : ""
        return "cannot \(operation) \(path): \(reason)\(hint)"
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
