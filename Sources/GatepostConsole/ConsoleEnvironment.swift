import Foundation
import GatepostCatalog
import GatepostCore
import Logging

/// What the console works with: the catalog, the sites as they are now, and the polls.
public struct ConsoleEnvironment: Sendable {
    public var catalog: any Catalog
    /// The sites and applications as the engine runs them now.
    public var sites: @Sendable () async -> SiteDirectory
    public var polls: any PollControl
    /// nil: no accounts; the console then serves the local machine only, to anyone on it.
    public var accounts: ConsoleAccounts?
    public var logger: Logger
    /// `gatepost serve` or `gatepost run`, for the page's footer and `/api/v1/health`.
    public var mode: String
    /// Where files sent from the console are written; nil: sending is refused.
    public var spool: Spool?
    /// This node's name when several share the catalog: a file another node holds is served
    /// by that node's console.
    public var node: String?

    public init(
        catalog: any Catalog, sites: @escaping @Sendable () async -> SiteDirectory, polls: any PollControl,
        accounts: ConsoleAccounts?, logger: Logger, mode: String, spool: Spool? = nil
    ) {
        self.spool = spool
        self.catalog = catalog
        self.sites = sites
        self.polls = polls
        self.accounts = accounts
        self.logger = logger
        self.mode = mode
    }

    func commands() async -> OperatorCommands {
        OperatorCommands(directory: await sites(), catalog: catalog, logger: logger)
    }
}

/// A site as the console and the API show it: where it polls, and how it is doing.
public struct SiteStatus: Codable, Sendable, Hashable {
    public var name: String
    public var description: String?
    public var enabled: Bool
    public var host: String
    public var port: Int
    public var security: String
    public var interval: String
    public var lastPoll: Date?
    public var lastSuccess: Date?
    public var lastError: String?
    public var nextPoll: Date?
    public var messages: Int64
    public var bytes: Int64
    /// Messages the poll went past; `stuck` once past `poll.stuck_after` polls.
    public var skipped: [SkippedMessage]
    public var stuck: Int
    public var configurationError: String?
    public var configurationErrorSince: Date?
    /// Secrets the site names that cannot be had now, with the reason.
    public var unavailableSecrets: [String]
    /// Failing (the last poll failed), stuck, or misconfigured: what the dashboard shows first.
    public var needsAttention: Bool

    public init(site: RemoteSite, state: SiteState?) {
        name = site.name
        description = site.description
        enabled = state?.enabled ?? site.enabled
        host = site.pop3.host
        port = site.pop3.port
        security = site.pop3.security.rawValue
        interval = DurationText.describe(site.poll.interval)
        lastPoll = state?.lastPoll
        lastSuccess = state?.lastSuccess
        lastError = state?.lastError
        nextPoll = state?.nextPoll
        messages = state?.messages ?? 0
        bytes = state?.bytes ?? 0
        skipped = state?.skipped ?? []
        stuck = skipped.filter { $0.polls >= site.poll.stuckAfter }.count
        configurationError = state?.configurationError
        configurationErrorSince = state?.configurationErrorSince
        unavailableSecrets = site.unavailableSecrets
        needsAttention = enabled && (lastError != nil || stuck > 0) || configurationError != nil || !unavailableSecrets.isEmpty
    }

    /// Those needing attention first, then by name.
    static func ordered(_ statuses: [SiteStatus]) -> [SiteStatus] {
        statuses.sorted { ($0.needsAttention ? 0 : 1, $0.name) < ($1.needsAttention ? 0 : 1, $1.name) }
    }
}
