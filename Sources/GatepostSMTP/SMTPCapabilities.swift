/// What the server offered in its EHLO reply (RFC 5321 section 4.1.1.1): one keyword per line
/// after the first, with parameters separated by spaces.
public struct SMTPCapabilities: Sendable, Hashable {
    /// The keyword lines as the server sent them; empty after a HELO fallback.
    public var lines: [String]
    /// Whether the server answered EHLO (false: HELO, an RFC 821 server with no extensions).
    public var isExtended: Bool

    public init(lines: [String], isExtended: Bool = true) {
        self.lines = lines
        self.isExtended = isExtended
    }

    /// From an EHLO reply: its first line is the server's name and greeting, not a keyword.
    public init(ehloReply: SMTPReply) {
        self.init(lines: Array(ehloReply.lines.dropFirst()))
    }

    /// No extensions: what a server that only knows HELO offers.
    public static let none = SMTPCapabilities(lines: [], isExtended: false)

    private func parameters(of keyword: String) -> [Substring]? {
        for line in lines {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = words.first, first.uppercased() == keyword { return Array(words.dropFirst()) }
        }
        return nil
    }

    private func has(_ keyword: String) -> Bool { parameters(of: keyword) != nil }

    /// SIZE (RFC 1870): the server declares message sizes in MAIL FROM.
    public var supportsSize: Bool { has("SIZE") }
    /// The largest message the server takes, in octets; nil when SIZE is missing or says 0 (no
    /// fixed limit).
    public var maximumMessageSize: Int? {
        guard let limit = parameters(of: "SIZE")?.first.flatMap({ Int($0) }), limit > 0 else { return nil }
        return limit
    }
    /// 8BITMIME (RFC 6152).
    public var supports8BitMIME: Bool { has("8BITMIME") }
    /// PIPELINING (RFC 2920).
    public var supportsPipelining: Bool { has("PIPELINING") }
    /// STARTTLS (RFC 3207).
    public var supportsStartTLS: Bool { has("STARTTLS") }
    /// ENHANCEDSTATUSCODES (RFC 2034).
    public var supportsEnhancedStatusCodes: Bool { has("ENHANCEDSTATUSCODES") }
    /// DSN (RFC 3461): delivery status notifications asked for in MAIL FROM and RCPT TO.
    public var supportsDeliveryStatusNotifications: Bool { has("DSN") }
    /// SMTPUTF8 (RFC 6531): non-ASCII addresses.
    public var supportsSMTPUTF8: Bool { has("SMTPUTF8") }

    /// SASL mechanisms from `AUTH ...` lines, upper-cased. The pre-standard `AUTH=...` form some
    /// old servers still send counts too.
    public var authMechanisms: [String] {
        var mechanisms: [String] = []
        for line in lines {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = words.first?.uppercased() else { continue }
            var offered: [Substring] = []
            if first == "AUTH" {
                offered = Array(words.dropFirst())
            } else if first.hasPrefix("AUTH=") {
                offered = [first.dropFirst(5)] + words.dropFirst()
            }
            for mechanism in offered.map({ $0.uppercased() }) where !mechanism.isEmpty && !mechanisms.contains(mechanism) {
                mechanisms.append(mechanism)
            }
        }
        return mechanisms
    }
}
