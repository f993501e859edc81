import Crypto
import Foundation
import GatepostCatalog

/// What a channel is told: an alert opened or resolved, and how many notifications this
/// channel held back since its last one (its per-minute budget was spent).
public struct AlertNotification: Sendable, Hashable, Codable {
    public enum Event: String, Sendable, Hashable, Codable {
        case opened, resolved
    }

    public var event: Event
    public var alert: Alert
    public var suppressed: Int

    public init(event: Event, alert: Alert, suppressed: Int = 0) {
        self.event = event
        self.alert = alert
        self.suppressed = suppressed
    }

    /// The webhook's body: JSON, dates in ISO 8601, keys sorted (the same alert, the same bytes).
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }
}

/// At most `perMinute` notifications in any minute, per channel: an alert storm (a shared
/// server down for 200 sites) gives a few notifications and a count, not 200 messages.
public struct NotificationBudget: Sendable {
    public let perMinute: Int
    private var sent: [Date] = []
    /// Held back since the last one sent.
    public private(set) var suppressed = 0

    public init(perMinute: Int) {
        self.perMinute = perMinute
    }

    /// Whether a notification may go at `now`; when it may, how many were held back before it
    /// (the count starts again).
    public mutating func take(at now: Date) -> (allowed: Bool, heldBack: Int) {
        sent.removeAll { now.timeIntervalSince($0) >= 60 }
        guard sent.count < perMinute else {
            suppressed += 1
            return (false, 0)
        }
        sent.append(now)
        defer { suppressed = 0 }
        return (true, suppressed)
    }
}

/// How a webhook proves it came from this gateway: `X-Gatepost-Signature: t=<unix time>,
/// sha256=<hex>`, the HMAC-SHA256 with the shared secret of `<unix time>.<body>`. The receiver
/// computes the same and compares (in constant time), and refuses an old time (a replay).
public enum WebhookSignature {
    public static let header = "X-Gatepost-Signature"

    public static func sign(body: Data, secret: String, at time: Date) -> String {
        let stamp = String(Int64(time.timeIntervalSince1970))
        return "t=\(stamp),sha256=\(hex(body: body, secret: secret, stamp: stamp))"
    }

    /// Whether `signature` is this body's with this secret, made within `tolerance` of `now`.
    public static func verify(_ signature: String, body: Data, secret: String, now: Date, tolerance: TimeInterval = 300) -> Bool {
        var fields: [Substring: Substring] = [:]
        for part in signature.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            if pair.count == 2 { fields[pair[0]] = pair[1] }
        }
        guard let stamp = fields["t"], let seconds = Int64(stamp), let given = fields["sha256"],
              abs(now.timeIntervalSince1970 - Double(seconds)) <= tolerance
        else { return false }
        let expected = Array(hex(body: body, secret: secret, stamp: String(stamp)).utf8)
        let actual = Array(given.utf8)
        guard expected.count == actual.count else { return false }
        return zip(expected, actual).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func hex(body: Data, secret: String, stamp: String) -> String {
        var message = Data(stamp.utf8)
        message.append(UInt8(ascii: "."))
        message.append(body)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8)))
        return code.map { String(format: "%02x", $0) }.joined()
    }
}

/// When a webhook that failed is tried again: 1, 2, 4, 8 seconds after the attempts before;
/// nil after the fifth (the alert stays in the catalog and the console either way).
public enum WebhookRetry {
    public static func delay(afterAttempt attempt: Int) -> Duration? {
        guard attempt >= 1, attempt < 5 else { return nil }
        return .seconds(1 << (attempt - 1))
    }

    /// Whether an answer with this status is worth trying again (the receiver is down or
    /// busy), rather than a refusal that will not change.
    public static func isTransient(status: Int) -> Bool {
        status == 408 || status == 429 || status >= 500
    }
}
