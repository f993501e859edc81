import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostCore
import Logging

struct SiteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "site",
        abstract: "Inspect Remote Sites and turn their polling on or off.",
        subcommands: [List.self, Show.self, Test.self, Enable.self, Disable.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the sites, their state, and any site file that cannot be used.")

        @OptionGroup var options: GlobalOptions
        @Option(help: "table or json.") var format: OutputFormat = .table

        func run() async throws {
            let directory = try Runtime.loadSites(options)
            let states = try await openCatalog(options).siteStates()
            switch format {
            case .json:
                print(try Formatting.json(directory.sites.map { SiteSummary(site: $0, state: states[$0.name]) }))
            case .table:
                var table = TextTable(headers: [
                    "NAME", "ENABLED", "SERVER", "SECURITY", "USER", "SECRETS", "DELETE", "INTERVAL", "LAST POLL", "MESSAGES", "SKIPPED", "LAST ERROR",
                ])
                for site in directory.sites {
                    let state = states[site.name]
                    table.rows.append([
                        site.name,
                        site.isEnabled(state) ? "yes" : "no",
                        "\(site.pop3.host):\(site.pop3.port)",
                        site.pop3.security.rawValue,
                        site.pop3.user,
                        site.unavailableSecrets.isEmpty ? "ok" : "\(site.unavailableSecrets.count) unavailable",
                        site.poll.deleteAfterRetrieve ? "yes" : "no",
                        Formatting.duration(site.poll.interval),
                        state?.lastPoll.map(Formatting.timestamp) ?? "-",
                        String(state?.messages ?? 0),
                        SiteSummary.skippedCount(state?.skipped ?? [], stuckAfter: site.poll.stuckAfter),
                        String((state?.configurationError.map { _ in Self.lastGoodNote(state) } ?? state?.lastError ?? "-").prefix(60)),
                    ])
                }
                // Sites whose file is broken now, while the daemon runs their last good version.
                let loaded = Set(directory.sites.map(\.name))
                for state in states.values.sorted(by: { $0.site < $1.site }) where state.configurationError != nil && !loaded.contains(state.site) {
                    table.rows.append([
                        state.site, state.enabled.map { $0 ? "yes" : "no" } ?? "-", "-", "-", "-", "-", "-", "-",
                        state.lastPoll.map(Formatting.timestamp) ?? "-", String(state.messages), "-", Self.lastGoodNote(state),
                    ])
                }
                Terminal.block(table.render())
            }
            for error in directory.errors {
                Terminal.error("unusable site file: \(error.description)")
            }
            if !directory.errors.isEmpty { throw ExitCode(2) }
        }

        static func lastGoodNote(_ state: SiteState?) -> String {
            "config error since \(state?.configurationErrorSince.map(Formatting.timestamp) ?? "?"); running the last good version"
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one site's settings (secrets masked) and state.")

        @OptionGroup var options: GlobalOptions
        @Argument(help: "The site.") var site: String
        @Option(help: "table or json.") var format: OutputFormat = .table

        func run() async throws {
            let directory = try Runtime.loadSites(options)
            let states = try await openCatalog(options).siteStates()
            guard directory.site(named: site) == nil, let state = states[site], state.configurationError != nil else {
                let remote = try Runtime.site(named: site, options)
                try show(SiteSummary(site: remote, state: states[remote.name]))
                return
            }
            // The file is broken; the daemon runs the last good version.
            let fields: [(String, String)] = [
                ("name", state.site), ("configuration error", state.configurationError ?? "-"),
                ("since", state.configurationErrorSince.map(Formatting.timestamp) ?? "-"),
                ("running", "the last good version of the file, in the daemon"),
                ("last poll", state.lastPoll.map(Formatting.timestamp) ?? "-"), ("last error", state.lastError ?? "-"),
            ]
            switch format {
            case .json: print(try Formatting.json(state))
            case .table: Terminal.block(TextTable.fields(fields).render())
            }
        }

        func show(_ summary: SiteSummary) throws {
            switch format {
            case .json:
                print(try Formatting.json(summary))
            case .table:
                Terminal.block(TextTable.fields(summary.fields).render())
            }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Connect, check TLS, log in and count the mailbox, step by step; retrieves and deletes nothing."
        )

        @OptionGroup var options: GlobalOptions
        @Argument(help: "The site.") var site: String

        func run() async throws {
            options.bootstrapLogging()
            let remote = try Runtime.site(named: site, options)
            let steps = await SiteTester.run(remote, logger: Logger(label: "gatepost.site-test"))
            Terminal.line("\(remote.name): site test")
            let width = steps.map(\.name.count).max() ?? 0
            for step in steps {
                Terminal.line("  \(step.passed ? "PASS" : "FAIL") \(step.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(step.detail)")
            }
            if steps.contains(where: { !$0.passed }) { throw ExitCode(1) }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turn polling of a site on (kept in the catalog).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The site.") var site: String
        func run() async throws { try await setEnabled(site, true, options: options) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turn polling of a site off (kept in the catalog).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The site.") var site: String
        func run() async throws { try await setEnabled(site, false, options: options) }
    }

    static func setEnabled(_ name: String, _ enabled: Bool, options: GlobalOptions) async throws {
        _ = try Runtime.site(named: name, options)
        try await openCatalog(options).setSiteEnabled(name, enabled: enabled)
        Terminal.line("\(name): \(enabled ? "enabled" : "disabled")")
    }
}

/// A site as operators see it: settings without secrets, and its state.
struct SiteSummary: Encodable {
    var name: String
    var description: String?
    var file: String
    var enabled: Bool
    var host: String
    var port: Int
    var security: String
    var user: String
    var password: String
    /// Secrets the site names that cannot be had right now, with the reason.
    var unavailableSecrets: [String]
    var auth: [String]
    var interval: String
    var deleteAfterRetrieve: Bool
    var maxMessageSize: Int64
    var commitBatch: Int
    /// Where acknowledgments and outbound files go, secrets masked; nil without `smtp:`.
    var smtp: String?
    var application: String?
    var lastPoll: Date?
    var lastSuccess: Date?
    var lastError: String?
    var nextPoll: Date?
    var messages: Int64
    var bytes: Int64
    /// Messages the polls went past (they stay on the server), and after how many polls in a
    /// row one counts as stuck.
    var skipped: [SkippedMessage]
    var stuckAfter: Int

    /// One skipped message for `site show`.
    func describe(_ skip: SkippedMessage) -> String {
        let polls = skip.polls == 1 ? "1 poll" : "\(skip.polls) polls in a row"
        let stuck = skip.polls >= stuckAfter ? " (stuck)" : ""
        let since = Formatting.timestamp(skip.firstSkipped)
        return "UIDL \(skip.uidl), \(polls)\(stuck), since \(since): \(skip.reason)"
    }

    /// "-", "2", or "2 (1 stuck)".
    static func skippedCount(_ skipped: [SkippedMessage], stuckAfter: Int) -> String {
        guard !skipped.isEmpty else { return "-" }
        let stuck = skipped.filter { $0.polls >= stuckAfter }.count
        return stuck == 0 ? String(skipped.count) : "\(skipped.count) (\(stuck) stuck)"
    }

    init(site: RemoteSite, state: SiteState?) {
        name = site.name
        description = site.description
        file = site.sourceFile
        enabled = site.isEnabled(state)
        host = site.pop3.host
        port = site.pop3.port
        security = site.pop3.security.rawValue
        user = site.pop3.user
        // Never the secret itself: only whether there is one.
        password = site.pop3.password.map { $0.problem.map { "(unavailable: \($0))" } ?? "****" } ?? "(none)"
        unavailableSecrets = site.unavailableSecrets
        auth = site.pop3.auth.map(\.rawValue)
        interval = Formatting.duration(site.poll.interval)
        deleteAfterRetrieve = site.poll.deleteAfterRetrieve
        maxMessageSize = site.poll.maxMessageSize
        commitBatch = site.poll.commitBatch
        smtp = site.smtp.map { smtp in
            var text = "\(smtp.host):\(smtp.port) (\(smtp.security.rawValue))"
            if let user = smtp.user { text += " as \(user)" + (smtp.oauth2 != nil ? " (OAuth2)" : smtp.password == nil ? "" : " ****") }
            text += ", from \(smtp.from ?? "(none)"), acknowledgments \(smtp.acknowledgments ? "on" : "off")"
            return text
        }
        application = site.application
        lastPoll = state?.lastPoll
        lastSuccess = state?.lastSuccess
        lastError = state?.lastError
        nextPoll = state?.nextPoll
        messages = state?.messages ?? 0
        bytes = state?.bytes ?? 0
        skipped = state?.skipped ?? []
        stuckAfter = site.poll.stuckAfter
    }

    var fields: [(String, String)] {
        let settings: [(String, String)] = [
            ("name", name), ("description", description ?? "-"), ("file", file), ("enabled", enabled ? "yes" : "no"),
            ("server", "\(host):\(port)"), ("security", security), ("user", user), ("password", password),
            ("auth", auth.isEmpty ? "(strongest offered)" : auth.joined(separator: ", ")), ("interval", interval),
            ("delete after retrieve", deleteAfterRetrieve ? "yes" : "no"), ("max message size", String(maxMessageSize)),
            ("commit batch", String(commitBatch)), ("smtp", smtp ?? "-"),
            ("application", application ?? "-"), ("last poll", lastPoll.map(Formatting.timestamp) ?? "-"),
            ("last success", lastSuccess.map(Formatting.timestamp) ?? "-"), ("last error", lastError ?? "-"),
            ("next poll", nextPoll.map(Formatting.timestamp) ?? "-"), ("messages", String(messages)), ("bytes", String(bytes)),
            ("skipped", Self.skippedCount(skipped, stuckAfter: stuckAfter)),
        ]
        let skips: [(String, String)] = skipped.map { skip in ("  message \(skip.number)", describe(skip)) }
        let secrets: [(String, String)] = unavailableSecrets.map { ("secret unavailable", $0) }
        return settings + secrets + skips
    }
}
