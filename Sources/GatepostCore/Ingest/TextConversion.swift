import Crypto
import Foundation
import GatepostMIME
import GatepostWire

/// Converts a kept text body (the message text, its HTML) to UTF-8, whatever charset it was sent
/// in, so that applications and operators read one encoding. Bytes that are already valid UTF-8
/// (or ASCII) are kept as they are, without a copy.
enum TextConversion {
    /// Bodies larger than this are kept as sent: a message text that size is not prose, and
    /// converting it would mean holding it whole in memory.
    static let maxConvertedSize: Int64 = 4 << 20

    /// `body` in UTF-8: itself, or a converted copy (in memory for a body in memory, else in a
    /// file next to it, named `convertedPath`).
    static func toUTF8(_ body: PartBody, part: MIMEPart, convertedPath: String) throws -> PartBody {
        guard body.size > 0, body.size <= maxConvertedSize else { return body }
        let bytes = try body.bytes(limit: Int(maxConvertedSize))
        let charset = part.contentType.charset
        let declaresUnicode = charset.map { ["utf-8", "utf8", "us-ascii", "ascii"].contains($0.trimmingASCIIWhitespace().asciiLowercased()) } ?? true
        if declaresUnicode, String(validating: bytes, as: UTF8.self) != nil {
            return body
        }
        // Unknown charsets and invalid bytes fall back to Latin-1, which keeps every byte.
        let converted = Array(Charset.decode(bytes, charset: charset).utf8)
        guard case .file = body.storage else {
            return PartBody(storage: .memory(converted), size: Int64(converted.count), sha256: hexString(SHA256.hash(data: converted)))
        }
        let writer = try SpoolFileWriter(path: convertedPath)
        try converted.withUnsafeBytes { try writer.write($0) }
        let (size, sha256) = try writer.finish()
        return PartBody(storage: .file(convertedPath), size: size, sha256: sha256)
    }
}
