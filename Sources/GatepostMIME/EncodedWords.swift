/// RFC 2047 encoded words (`=?charset?B|Q?text?=`) as found in Subject, From and, against the
/// rules but often, in quoted file names.
public enum EncodedWords {
    /// Decodes every encoded word in `text`. Whitespace between two adjacent encoded words is
    /// dropped (RFC 2047 section 6.2); anything malformed is left as it was.
    public static func decode(_ text: String) -> String {
        guard text.contains("=?") else { return text }
        var result = ""
        var rest = Substring(text)
        var previousWasEncodedWord = false
        var pendingWhitespace = Substring("")
        while !rest.isEmpty {
            guard let start = rest.range(of: "=?") else {
                result += pendingWhitespace
                result += rest
                return result
            }
            let before = rest[rest.startIndex..<start.lowerBound]
            if let (decoded, end) = decodeWord(rest[start.lowerBound...]) {
                let beforeIsWhitespace = before.allSatisfy { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
                if !(previousWasEncodedWord && beforeIsWhitespace) {
                    result += pendingWhitespace
                    result += before
                }
                pendingWhitespace = ""
                result += decoded
                previousWasEncodedWord = true
                rest = rest[end...]
                // Hold whitespace back: it vanishes if another encoded word follows.
                let ws = rest.prefix { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
                pendingWhitespace = ws
                rest = rest[ws.endIndex...]
            } else {
                result += pendingWhitespace
                pendingWhitespace = ""
                result += before
                result += "=?"
                previousWasEncodedWord = false
                rest = rest[start.upperBound...]
            }
        }
        return result + pendingWhitespace
    }

    /// Decodes one encoded word at the start of `word`, returning the text and where it ended.
    private static func decodeWord(_ word: Substring) -> (String, Substring.Index)? {
        let body = word.dropFirst(2)
        guard let q1 = body.firstIndex(of: "?") else { return nil }
        var charset = String(body[body.startIndex..<q1])
        // RFC 2231 allows a language suffix: charset*lang.
        if let star = charset.firstIndex(of: "*") { charset = String(charset[..<star]) }
        let afterCharset = body[body.index(after: q1)...]
        guard let q2 = afterCharset.firstIndex(of: "?") else { return nil }
        let encoding = afterCharset[afterCharset.startIndex..<q2].uppercased()
        let payloadStart = afterCharset.index(after: q2)
        guard let close = afterCharset[payloadStart...].range(of: "?=") else { return nil }
        let payload = afterCharset[payloadStart..<close.lowerBound]
        guard !payload.contains(" ") else { return nil }
        let bytes: [UInt8]
        switch encoding {
        case "B":
            var decoder = Base64Decoder()
            var out: [UInt8] = []
            decoder.decode(Array(payload.utf8), into: &out)
            bytes = out
        case "Q":
            bytes = decodeQ(Array(payload.utf8))
        default:
            return nil
        }
        return (Charset.decode(bytes, charset: charset), close.upperBound)
    }

    private static func decodeQ(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let byte = input[i]
            if byte == UInt8(ascii: "_") {
                out.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "="), i + 2 < input.count,
                      let high = hexValue(input[i + 1]), let low = hexValue(input[i + 2]) {
                out.append(high << 4 | low)
                i += 2
            } else {
                out.append(byte)
            }
            i += 1
        }
        return out
    }
}

@inline(__always)
func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    default: nil
    }
}
