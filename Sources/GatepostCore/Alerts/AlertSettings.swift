import Foundation
import GatepostCatalog
import GatepostMIME

/// What an alert is about. Each kind opens once per subject (a site, a transfer, a message, an
/// expected file) and resolves when what caused it clears.
public enum AlertKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// Polls of a site failing: `failing_after` in a row, or the first for authentication and
    /// certificate failures (they do not go away by themselves).
    case siteFailing = "site-failing"
    /// A message on the server that poll after poll cannot be retrieved.
    case messageStuck = "message-stuck"
    /// A message kept whole (RECOVER) not delivered or purged yet.
    case recoverReceived = "recover-received"
    /// A received file whose delivery to its application failed for good.
    case deliveryFailed = "delivery-failed"
    /// An outbound file the partner's side refused or bounced.
    case acknowledgmentFailed = "acknowledgment-failed"
    /// An outbound file not acknowledged within the site's `ack_timeout`.
    case acknowledgmentOverdue = "acknowledgment-overdue"
    /// Outgoing messages of a site waiting longer than `outbox_older_than`.
    case outboxStale = "outbox-stale"
    /// An expected file (a site's `expect` rule) that did not come by its deadline.
    case arrivalMissed = "arrival-missed"
    /// Something a site needs that stops working within `expiring_within`: the server's TLS
    /// certificate as the last poll saw it, a client certificate, a secret with a known expiry.
    case expiring
    /// A site's probe (`probe:`) that did not come back through the poll within its deadline.
    case probeMissing = "probe-missing"
    /// A node sharing the catalog whose heartbeat stopped without it leaving (killed, its
    /// machine or network gone): its sites moved to the others, which also take up its
    /// deliveries and MDNs where its spool reads (else they wait for it).
    case nodeGone = "node-gone"
}

/// `alerts:` in `sites/local.yaml`: thresholds, channels, and which alerts go where.
public struct AlertSettings: Sendable, Hashable {
    public struct Channel: Sendable, Hashable {
        public enum Destination: Sendable, Hashable {
            /// Gatepost's own log (always there as `log`).
            case log
            /// A JSON POST, signed with an HMAC-SHA256 of `secret` when there is one.
            case webhook(url: URL, secret: Secret?)
            /// A text message to `to`, through `smtp` (its `from` is the sender).
            case email(to: [String], smtp: RemoteSite.SMTP)
        }

        public var name: String
        public var destination: Destination

        public init(name: String, destination: Destination) {
            self.name = name
            self.destination = destination
        }
    }

    /// Which alerts go to which channels: every kind and site a field leaves out.
    public struct Route: Sendable, Hashable {
        public var kinds: Set<AlertKind>?
        /// Globs over site names.
        public var sites: [String]?
        public var channels: [String]

        public init(kinds: Set<AlertKind>? = nil, sites: [String]? = nil, channels: [String]) {
            self.kinds = kinds
            self.sites = sites
            self.channels = channels
        }

        public func applies(to alert: Alert) -> Bool {
            if let kinds, !kinds.contains(where: { $0.rawValue == alert.kind }) { return false }
            if let sites, !sites.contains(where: { Glob.matches($0, alert.site ?? "") }) { return false }
            return true
        }
    }

    /// Failed polls in a row that make a site failing (authentication and TLS failures: 1).
    public var failingAfter = 3
    /// Polls in a row a message must fail to be retrieved to be stuck.
    public var stuckAfter = 3
    public var outboxOlderThan: Duration = .seconds(3600)
    /// How long before an expiry it is told.
    public var expiringWithin: Duration = .seconds(14 * 86400)
    /// How far back received and sent transfers are looked at; an alert about an older one
    /// resolves.
    public var lookback: Duration = .seconds(7 * 86400)
    /// How often the conditions are looked at.
    public var interval: Duration = .seconds(30)
    /// Notifications each channel sends per minute at most; the rest are counted and the
    /// count is given with the next one.
    public var notificationsPerMinute = 20
    public var channels: [Channel] = [Channel(name: "log", destination: .log)]
    /// None: every alert goes to every channel.
    public var routes: [Route] = []

    public init() {}

    public static let defaults = AlertSettings()

    /// The channels `alert` goes to, in the order they are defined.
    public func channels(for alert: Alert) -> [Channel] {
        guard !routes.isEmpty else { return channels }
        let names = Set(routes.filter { $0.applies(to: alert) }.flatMap(\.channels))
        return channels.filter { names.contains($0.name) }
    }
}

extension SiteLoader {
    /// `alerts:` of the local site.
    func alertSettings(_ node: ConfigNode?) throws -> AlertSettings {
        var settings = AlertSettings()
        guard let node else { return settings }
        let map = try node.mapping()
        try map.rejectUnknownKeys([
            "failing_after", "stuck_after", "outbox_older_than", "expiring_within", "lookback", "interval", "notifications_per_minute",
            "channels", "routes",
        ])
        settings.failingAfter = try map["failing_after"]?.int(in: 1...1000) ?? settings.failingAfter
        settings.stuckAfter = try map["stuck_after"]?.int(in: 1...1000) ?? settings.stuckAfter
        settings.outboxOlderThan = try map["outbox_older_than"]?.duration() ?? settings.outboxOlderThan
        settings.expiringWithin = try map["expiring_within"]?.duration() ?? settings.expiringWithin
        settings.lookback = try map["lookback"]?.duration() ?? settings.lookback
        settings.interval = try map["interval"]?.duration() ?? settings.interval
        settings.notificationsPerMinute = try map["notifications_per_minute"]?.int(in: 1...10_000) ?? settings.notificationsPerMinute
        if let channelsNode = map["channels"] {
            for (name, channelNode) in try channelsNode.mapping().entries {
                guard name != "log" else { throw channelNode.error("`log` is the built-in channel; give yours another name") }
                let channelMap = try channelNode.mapping()
                try channelMap.rejectUnknownKeys(["webhook", "secret", "secret_file", "email"])
                if let emailNode = channelMap["email"] {
                    try channelMap.rejectUnknownKeys(["email"])
                    settings.channels.append(.init(name: name, destination: try emailChannel(emailNode)))
                    continue
                }
                try channelMap.rejectUnknownKeys(["webhook", "secret", "secret_file"])
                guard channelMap["webhook"] != nil else { throw channelNode.error("give webhook: URL or email: {to, smtp}") }
                let urlNode = try channelMap.require("webhook")
                let text = try urlNode.nonEmptyString()
                guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
                    throw urlNode.error("must be an http:// or https:// URL")
                }
                settings.channels.append(.init(name: name, destination: .webhook(url: url, secret: try secret(channelMap, key: "secret"))))
            }
        }
        if let routesNode = map["routes"] {
            for routeNode in try routesNode.sequence() {
                let routeMap = try routeNode.mapping()
                try routeMap.rejectUnknownKeys(["kinds", "sites", "channels"])
                var kinds: Set<AlertKind>?
                if let kindsNode = routeMap["kinds"] {
                    kinds = Set(try kindsNode.stringList().map { name in
                        guard let kind = AlertKind(rawValue: name) else {
                            throw kindsNode.error("`\(name)` is not an alert kind (known: \(AlertKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                        }
                        return kind
                    })
                }
                let channelsNode = try routeMap.require("channels")
                let channels = try channelsNode.stringList()
                for name in channels where !settings.channels.contains(where: { $0.name == name }) {
                    throw channelsNode.error("no channel `\(name)` (defined: \(settings.channels.map(\.name).joined(separator: ", ")))")
                }
                settings.routes.append(.init(kinds: kinds, sites: try routeMap["sites"]?.stringList(), channels: channels))
            }
        }
        return settings
    }

    func emailChannel(_ node: ConfigNode) throws -> AlertSettings.Channel.Destination {
        let map = try node.mapping()
        try map.rejectUnknownKeys(["to", "smtp"])
        let toNode = try map.require("to")
        let recipients = try toNode.stringList()
        guard !recipients.isEmpty else { throw toNode.error("must name at least one address") }
        for recipient in recipients where (try? MailAddress(recipient)) == nil {
            throw toNode.error("`\(recipient)` is not a mail address")
        }
        let smtpNode = try map.require("smtp")
        let smtp = try smtpSettings(smtpNode)
        guard smtp.from != nil else { throw smtpNode.error("needs from: the address alerts are sent as") }
        return .email(to: recipients, smtp: smtp)
    }
}
