/// Byte-level helpers for header syntax, which is ASCII (RFC 5322, RFC 2045). Foundation's
/// Unicode-aware trimming and comparison cost more than the rest of header parsing together on
/// Linux, and header names, parameter names and MIME tokens never need them.
extension StringProtocol {
    /// Without leading and trailing spaces, tabs, CRs and LFs.
    public func trimmingASCIIWhitespace() -> String {
        let bytes = Array(utf8)
        var start = 0
        var end = bytes.count
        while start < end, ASCII.isWhitespace(bytes[start]) { start += 1 }
        while end > start, ASCII.isWhitespace(bytes[end - 1]) { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// Equal when compared with A-Z folded to a-z, as header field names and MIME tokens are.
    public func equalsIgnoringASCIICase<Other: StringProtocol>(_ other: Other) -> Bool {
        let left = utf8
        let right = other.utf8
        guard left.count == right.count else { return false }
        return zip(left, right).allSatisfy { ASCII.lowercased($0) == ASCII.lowercased($1) }
    }

    /// A-Z folded to a-z; other characters as they are.
    public func asciiLowercased() -> String {
        guard utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else { return String(self) }
        return String(decoding: utf8.map(ASCII.lowercased), as: UTF8.self)
    }
}

enum ASCII {
    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }

    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}
