import Foundation

/// Parameters of Content-Type and Content-Disposition, with RFC 2231 extended values
/// (`name*=charset'lang'%XX`) and continuations (`name*0*=`, `name*1=`) assembled.
public struct HeaderParameters: Sendable, Hashable {
    /// Lower-cased names, decoded values.
    public private(set) var values: [String: String]

    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    public subscript(_ name: String) -> String? { values[name.asciiLowercased()] }

    /// Parses `; a=b; c="d"` (everything after the main value).
    static func parse(_ text: Substring) -> HeaderParameters {
        var raw: [(name: String, value: String, quoted: Bool)] = []
        var scanner = ParameterScanner(text)
        while let (name, value, quoted) = scanner.next() {
            raw.append((name.asciiLowercased(), value, quoted))
        }

        var plain: [String: String] = [:]
        // Continuation sections: name -> [index: (value, extended, quoted)]
        var sections: [String: [Int: (value: String, extended: Bool, quoted: Bool)]] = [:]
        for (name, value, quoted) in raw {
            if let star = name.firstIndex(of: "*") {
                let base = String(name[..<star])
                let rest = name[name.index(after: star)...]
                if rest.isEmpty {
                    // name*=charset'lang'value
                    sections[base, default: [:]][0] = (value, true, quoted)
                } else {
                    let extended = rest.hasSuffix("*")
                    let number = extended ? rest.dropLast() : rest
                    if let index = Int(number), index >= 0, index < 1_000 {
                        sections[base, default: [:]][index] = (value, extended, quoted)
                    }
                }
            } else if plain[name] == nil {
                plain[name] = value
            }
        }
        for (base, parts) in sections {
            var bytes: [UInt8] = []
            var charset: String?
            for index in parts.keys.sorted() {
                guard let section = parts[index] else { continue }
                var piece = Substring(section.value)
                // An extended value in quotes is invalid (RFC 2231 makes it a token), but Pine and
                // others send `filename*="iso-8859-1''Fr%F6sche.txt"`, and Python, MimeKit and
                // mime4j decode it: so do we, when it has the charset'language' prefix that only
                // an extended value has (a quoted value without it is taken as written).
                var decode = section.extended
                if section.extended, index == 0 {
                    let pieces = section.value.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                    if pieces.count == 3 {
                        charset = String(pieces[0])
                        piece = pieces[2]
                    } else if section.quoted {
                        decode = false
                    }
                } else if section.extended, section.quoted, charset == nil {
                    decode = false
                }
                if decode {
                    bytes.append(contentsOf: percentDecode(piece))
                } else {
                    bytes.append(contentsOf: piece.utf8)
                }
            }
            // An RFC 2231 value wins over a plain one of the same name: it is the exact one.
            plain[base] = Charset.decode(bytes, charset: charset)
        }
        return HeaderParameters(plain)
    }

    private static func percentDecode(_ text: Substring) -> [UInt8] {
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "%"), i + 2 < utf8.count,
               let high = hexValue(utf8[i + 1]), let low = hexValue(utf8[i + 2]) {
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(utf8[i])
                i += 1
            }
        }
        return out
    }
}

/// Splits `; name=value; name="quoted \" value"` tolerantly: comments in parentheses are skipped
/// and a parameter without `=` is ignored.
private struct ParameterScanner {
    private var chars: [Character]
    private var position = 0

    init(_ text: Substring) {
        chars = Array(text)
    }

    mutating func next() -> (String, String, Bool)? {
        while position < chars.count {
            skipSpaceAndComments()
            guard position < chars.count else { return nil }
            if chars[position] == ";" {
                position += 1
                continue
            }
            var name = ""
            while position < chars.count, chars[position] != "=", chars[position] != ";" {
                name.append(chars[position])
                position += 1
            }
            name = name.trimmingASCIIWhitespace()
            guard position < chars.count, chars[position] == "=" else { continue }
            position += 1
            skipSpaceAndComments()
            if position < chars.count, chars[position] == "\"" {
                position += 1
                var value = ""
                while position < chars.count, chars[position] != "\"" {
                    if chars[position] == "\\", position + 1 < chars.count {
                        position += 1
                    }
                    value.append(chars[position])
                    position += 1
                }
                position += 1
                if !name.isEmpty { return (name, value, true) }
            } else {
                var value = ""
                while position < chars.count, chars[position] != ";" {
                    value.append(chars[position])
                    position += 1
                }
                value = value.trimmingASCIIWhitespace()
                if let paren = value.firstIndex(of: "(") { value = String(value[..<paren]).trimmingASCIIWhitespace() }
                if !name.isEmpty { return (name, value, false) }
            }
        }
        return nil
    }

    private mutating func skipSpaceAndComments() {
        while position < chars.count {
            if chars[position].isWhitespace {
                position += 1
            } else if chars[position] == "(" {
                var depth = 0
                while position < chars.count {
                    if chars[position] == "(" { depth += 1 }
                    if chars[position] == ")" { depth -= 1 }
                    position += 1
                    if depth == 0 { break }
                }
            } else {
                return
            }
        }
    }
}

/// `type/subtype; parameters` (RFC 2045 section 5.1), lower-cased type and subtype.
public struct ContentType: Sendable, Hashable, CustomStringConvertible {
    public var type: String
    public var subtype: String
    public var parameters: HeaderParameters

    public init(type: String, subtype: String, parameters: HeaderParameters = HeaderParameters()) {
        self.type = type.asciiLowercased()
        self.subtype = subtype.asciiLowercased()
        self.parameters = parameters
    }

    public static let textPlain = ContentType(type: "text", subtype: "plain")
    public static let messageRFC822 = ContentType(type: "message", subtype: "rfc822")

    public init?(parsing raw: String) {
        let main = raw.prefix { $0 != ";" }
        let pieces = main.split(separator: "/", maxSplits: 1)
        guard pieces.count == 2 else { return nil }
        let type = pieces[0].trimmingASCIIWhitespace()
        var subtype = pieces[1].trimmingASCIIWhitespace()
        if let paren = subtype.firstIndex(of: "(") { subtype = String(subtype[..<paren]).trimmingASCIIWhitespace() }
        guard !type.isEmpty, !subtype.isEmpty else { return nil }
        self.init(type: type, subtype: subtype, parameters: HeaderParameters.parse(raw[main.endIndex...]))
    }

    public var isMultipart: Bool { type == "multipart" }
    public var mimeType: String { "\(type)/\(subtype)" }
    public var boundary: String? { parameters["boundary"].flatMap { $0.isEmpty ? nil : $0 } }
    public var charset: String? { parameters["charset"] }
    public var description: String { mimeType }
}

/// `inline` or `attachment` with parameters (RFC 2183).
public struct ContentDisposition: Sendable, Hashable {
    public var kind: String
    public var parameters: HeaderParameters

    public init(kind: String, parameters: HeaderParameters = HeaderParameters()) {
        self.kind = kind.asciiLowercased()
        self.parameters = parameters
    }

    public init?(parsing raw: String) {
        let main = raw.prefix { $0 != ";" }.trimmingASCIIWhitespace().asciiLowercased()
        kind = main
        parameters = HeaderParameters.parse(raw[(raw.firstIndex(of: ";") ?? raw.endIndex)...])
    }

    public var isAttachment: Bool { kind == "attachment" }
    public var fileName: String? { parameters["filename"] }
}
