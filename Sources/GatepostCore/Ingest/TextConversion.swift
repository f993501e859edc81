import Foundation
import GatepostMIME

/// Converts a kept text body (message.txt, message.html) to UTF-8, whatever charset it was sent
/// in, so that applications and operators read one encoding. Bytes that are already valid UTF-8
/// (or ASCII) are kept as they are, without a copy.
enum TextConversion {
    /// Bodies larger than this are kept as sent: a message text that size is not prose, and
    /// converting it would mean holding it whole in memory.
    static let maxConvertedSize: Int64 = 4 << 20

    /// The file to keep for `part`'s body `file`: `file` itself, or a converted copy next to it.
    static func toUTF8(_ file: PartFile, part: MIMEPart, workspace: String) throws -> PartFile {
        guard file.size > 0, file.size <= maxConvertedSize else { return file }
        let path = workspace + "/" + file.name
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let charset = part.contentType.charset
        let declaresUnicode = charset.map { ["utf-8", "utf8", "us-ascii", "ascii"].contains($0.trimmingASCIIWhitespace().asciiLowercased()) } ?? true
        if declaresUnicode, String(validating: bytes, as: UTF8.self) != nil {
            return file
        }
        // Unknown charsets and invalid bytes fall back to Latin-1, which keeps every byte.
        let text = Charset.decode(bytes, charset: charset)
        let converted = file.name + ".utf8"
        let writer = try SpoolFileWriter(path: workspace + "/" + converted)
        try Array(text.utf8).withUnsafeBytes { try writer.write($0) }
        let (size, sha256) = try writer.finish()
        return PartFile(name: converted, size: size, sha256: sha256)
    }
}
