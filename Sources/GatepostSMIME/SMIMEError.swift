internal import COpenSSL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why an S/MIME operation failed, in words for an operator; OpenSSL's own reasons are kept
/// in `detail`.
public enum SMIMEError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Our key or certificate, or a partner's certificate, cannot be loaded.
    case credentials(String)
    /// The message is encrypted for someone else: none of its recipients is our certificate.
    case notForUs(detail: String)
    /// Decryption failed: a wrong key, a damaged message, an authentication tag that does not match.
    case decryptionFailed(detail: String)
    /// The signature does not verify: content changed, signer unknown or not trusted, expired.
    case signatureInvalid(detail: String)
    /// Signing or encrypting failed.
    case operationFailed(String)
    case malformed(String)
    case file(String)

    static func file(_ operation: String, path: String, errno code: Int32) -> SMIMEError {
        .file("cannot \(operation) \(path): \(String(cString: strerror(code)))")
    }

    public var description: String {
        switch self {
        case .credentials(let text): text
        case .notForUs(let detail): "encrypted for another recipient than this site's smime certificate (\(detail))"
        case .decryptionFailed(let detail): "cannot decrypt: \(detail)"
        case .signatureInvalid(let detail): "the signature does not verify: \(detail)"
        case .operationFailed(let text): text
        case .malformed(let text): text
        case .file(let text): text
        }
    }
}

/// OpenSSL's error queue, read and emptied: each entry's reason and its added data
/// ("Verify error:certificate has expired"), most specific last.
enum OpenSSLErrors {
    struct Entry {
        var library: Int32
        var reason: Int32
        var text: String
    }

    static func clear() {
        ERR_clear_error()
    }

    static func drain() -> [Entry] {
        var entries: [Entry] = []
        while true {
            var data: UnsafePointer<CChar>?
            var flags: Int32 = 0
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            var text = ERR_reason_error_string(code).map { String(cString: $0) } ?? "error \(code)"
            if let data, flags & ERR_TXT_STRING != 0 {
                let extra = String(cString: data)
                if !extra.isEmpty { text += " (\(extra))" }
            }
            entries.append(Entry(library: ERR_GET_LIB(code), reason: ERR_GET_REASON(code), text: text))
        }
        return entries
    }

    /// The queue in one line, or `fallback` when it is empty.
    static func text(_ entries: [Entry], fallback: String) -> String {
        let texts = entries.map(\.text).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        return texts.isEmpty ? fallback : texts.joined(separator: "; ")
    }
}
