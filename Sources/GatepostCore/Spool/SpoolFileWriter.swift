import Crypto
#if canImport(Glibc)
import GatepostWire
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one spool file: created exclusively and owner-only, buffered, hashed (SHA-256) as it
/// is written, so no second pass over the file is needed.
final class SpoolFileWriter {
    let path: String
    private var descriptor: Int32
    private var hasher = SHA256()
    private let hashing: Bool
    private var buffer: [UInt8] = []
    private static let bufferSize = 256 * 1024
    private(set) var size: Int64 = 0

    /// - Parameter hashing: false when the caller hashes the bytes itself (the SHA-256 returned is then meaningless).
    init(path: String, hashing: Bool = true) throws(SpoolError) {
        self.path = path
        self.hashing = hashing
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SpoolError("create", path: path, errno: errno) }
        buffer.reserveCapacity(Self.bufferSize)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SpoolError) {
        guard !bytes.isEmpty else { return }
        if hashing { hasher.update(bufferPointer: bytes) }
        size += Int64(bytes.count)
        if buffer.count + bytes.count > Self.bufferSize {
            try flush()
        }
        if bytes.count >= Self.bufferSize {
            try writeFully(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// Writes the bytes of an array (a body held in memory until now).
    func write(contentsOf bytes: [UInt8]) throws(SpoolError) {
        var failure: SpoolError?
        bytes.withUnsafeBytes { buffer in
            do throws(SpoolError) { try write(buffer) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes what the buffer holds, so that the file can be read while it is still open.
    func flush() throws(SpoolError) {
        guard !buffer.isEmpty else { return }
        var failure: SpoolError?
        buffer.withUnsafeBytes { bytes in
            do throws(SpoolError) { try Self.writeFully(descriptor, bytes, path: path) } catch { failure = error }
        }
        buffer.removeAll(keepingCapacity: true)
        if let failure { throw failure }
    }

    private func writeFully(_ bytes: UnsafeRawBufferPointer) throws(SpoolError) {
        try Self.writeFully(descriptor, bytes, path: path)
    }

    /// All of `bytes` to `descriptor`, however many write calls it takes.
    static func writeFully(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(SpoolError) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, base + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw SpoolError("write", path: path, errno: errno)
            }
            offset += written
        }
    }

    /// Flushes and closes; returns the size and hex SHA-256. The file is not yet fsynced: the
    /// spool does that only for files that are kept.
    @discardableResult
    func finish() throws(SpoolError) -> (size: Int64, sha256: String) {
        try flush()
        if close(descriptor) != 0 {
            let code = errno
            descriptor = -1
            throw SpoolError("close", path: path, errno: code)
        }
        descriptor = -1
        return (size, hexString(hasher.finalize()))
    }
}
