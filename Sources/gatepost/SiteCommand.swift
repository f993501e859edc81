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
            let local = try Runtime.loadSites(options).local
            let steps = await SiteTester.run(remote, local: local, logger: Logger(label: "gatepost.site-test"))
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
        let commands = OperatorCommands(directory: try Runtime.loadSites(options), catalog: try await openCatalog(options), logger: Logger(label: "gatepost.site"))
        try await commands.setSiteEnabled(name, enabled, actor: Runtime.commandLineActor)
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
    var tls: TLSSummary
    var oauth2TokenURL: String?
    var connectTimeout: String
    var readTimeout: String
    var address: String?
    /// Where acknowledgments and outbound files go, secrets masked; nil without `smtp:`.
    var smtp: SMTPSummary?
    var application: String?
    var routes: [RouteSummary]
    var limits: LimitsSummary
    var classify: [String: String]
    /// `expect:` rules as written (file, days, by, time zone).
    var expect: [String]
    /// `probe:`, or nil.
    var probe: String?
    /// The `smime:` block: requirements, and each certificate's subject and expiry.
    var smime: [String]?
    /// The POP3 server's certificate expiry as the last TLS poll saw it.
    var serverCertificateExpires: Date?

    struct TLSSummary: Encodable {
        var verify: Bool
        var caFile: String?
        var clientCertificate: String?
    }

    struct SMTPSummary: Encodable {
        var host: String
        var port: Int
        var security: String
        var from: String?
        var user: String?
        var password: String
        var oauth2TokenURL: String?
        var acknowledgments: Bool
        var acknowledgeAnyAddress: Bool
        var readTimeout: String
        /// `smtp.ack_timeout`, or nil: outbound transfers never become overdue.
        var ackTimeout: String?
        /// `smtp.delivery_reports`: all, failures or none.
        var deliveryReports: String
        var tls: TLSSummary
    }

    struct RouteSummary: Encodable {
        var type: String?
        var fileName: String?
        var sender: String?
        var subject: String?
        var application: String
    }

    struct LimitsSummary: Encodable {
        var maxMessageSize: Int64
        var maxHeaderSize: Int
        var maxLineLength: Int
        var maxDepth: Int
        var maxParts: Int
    }
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
        tls = TLSSummary(verify: site.pop3.tls.verify, caFile: site.pop3.tls.caFile, clientCertificate: site.pop3.tls.clientCertificate)
        oauth2TokenURL = site.pop3.oauth2?.tokenURL
        connectTimeout = Formatting.duration(site.pop3.connectTimeout)
        readTimeout = Formatting.duration(site.pop3.readTimeout)
        address = site.pop3.address
        smtp = site.smtp.map { smtp in
            SMTPSummary(
                host: smtp.host, port: smtp.port, security: smtp.security.rawValue, from: smtp.from, user: smtp.user,
                password: smtp.password.map { $0.problem.map { "(unavailable: \($0))" } ?? "****" } ?? "(none)",
                oauth2TokenURL: smtp.oauth2?.tokenURL, acknowledgments: smtp.acknowledgments,
                acknowledgeAnyAddress: smtp.acknowledgeAnyAddress, readTimeout: Formatting.duration(smtp.readTimeout),
                ackTimeout: smtp.acknowledgmentTimeout.map(Formatting.duration), deliveryReports: smtp.deliveryReports.rawValue,
                tls: TLSSummary(verify: smtp.tls.verify, caFile: smtp.tls.caFile, clientCertificate: smtp.tls.clientCertificate)
            )
        }
        application = site.application
        routes = site.routes.map {
            RouteSummary(type: $0.type?.rawValue, fileName: $0.fileName, sender: $0.sender, subject: $0.subject, application: $0.application)
        }
        let parser = site.poll.limits
        limits = LimitsSummary(
            maxMessageSize: Int64(parser.maxMessageSize), maxHeaderSize: parser.maxHeaderBytes,
            maxLineLength: parser.maxHeaderLineLength, maxDepth: parser.maxDepth, maxParts: parser.maxParts
        )
        classify = [
            "text_only": site.classification.textOnlyIsMessage ? "msg" : "recover",
            "bare_file": site.classification.bareFileIsTransfer ? "xfer" : "recover",
            "split_attachments": site.classification.splitAttachments ? "true" : "false",
        ]
        lastPoll = state?.lastPoll
        lastSuccess = state?.lastSuccess
        lastError = state?.lastError
        nextPoll = state?.nextPoll
        messages = state?.messages ?? 0
        bytes = state?.bytes ?? 0
        skipped = state?.skipped ?? []
        stuckAfter = site.poll.stuckAfter
        let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        expect = site.expectations.map { rule in
            let every = rule.weekdays.count == 7 ? "daily" : rule.weekdays.sorted().map { days[$0 - 1] }.joined(separator: ",")
            return "\(rule.fileName) \(every) by \(String(format: "%02d:%02d", rule.hour, rule.minute)) \(rule.timeZone.identifier)"
        }
        smime = site.smime?.summary()
        probe = site.probe.map { "to \($0.to) every \(Formatting.duration($0.every)), back within \(Formatting.duration($0.deadline))" }
        serverCertificateExpires = state?.serverCertificateExpires
    }

    var fields: [(String, String)] {
        let settings: [(String, String)] = [
            ("name", name), ("description", description ?? "-"), ("file", file), ("enabled", enabled ? "yes" : "no"),
            ("server", "\(host):\(port)"), ("security", security), ("user", user), ("password", password),
            ("auth", auth.isEmpty ? "(strongest offered)" : auth.joined(separator: ", ")), ("interval", interval),
            ("delete after retrieve", deleteAfterRetrieve ? "yes" : "no"), ("max message size", String(maxMessageSize)),
            ("commit batch", String(commitBatch)),
            ("tls", "verify \(tls.verify ? "on" : "OFF")" + (tls.caFile.map { ", ca_file \($0)" } ?? "") + (tls.clientCertificate.map { ", client certificate \($0)" } ?? "")),
            ("oauth2 token url", oauth2TokenURL ?? "-"), ("timeouts", "connect \(connectTimeout), read \(readTimeout)"),
            ("address", address ?? "-"),
            ("smtp", smtp.map { smtp in
                "\(smtp.host):\(smtp.port) (\(smtp.security)), from \(smtp.from ?? "(none)")"
                    + (smtp.user.map { ", as \($0) \(smtp.oauth2TokenURL != nil ? "(OAuth2)" : smtp.password)" } ?? "")
                    + ", acknowledgments \(smtp.acknowledgments ? "on" : "off")\(smtp.acknowledgeAnyAddress ? " (any address)" : ""), read \(smtp.readTimeout)"
                    + (smtp.ackTimeout.map { ", ack timeout \($0)" } ?? "") + ", delivery reports \(smtp.deliveryReports)"
                    + ", tls verify \(smtp.tls.verify ? "on" : "OFF")"
            } ?? "-"),
            ("application", application ?? "-"),
            ("limits", "message \(limits.maxMessageSize) bytes, header \(limits.maxHeaderSize), line \(limits.maxLineLength), depth \(limits.maxDepth), parts \(limits.maxParts)"),
            ("classify", classify.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")), ("last poll", lastPoll.map(Formatting.timestamp) ?? "-"),
            ("last success", lastSuccess.map(Formatting.timestamp) ?? "-"), ("last error", lastError ?? "-"),
            ("next poll", nextPoll.map(Formatting.timestamp) ?? "-"), ("messages", String(messages)), ("bytes", String(bytes)),
            ("skipped", Self.skippedCount(skipped, stuckAfter: stuckAfter)),
            ("server certificate", serverCertificateExpires.map { "expires \(Formatting.timestamp($0))" } ?? "-"),
            ("probe", probe ?? "-"),
        ]
        let expectLines: [(String, String)] = expect.enumerated().map { index, rule in ("expect \(index + 1)", rule) }
        let skips: [(String, String)] = skipped.map { skip in ("  message \(skip.number)", describe(skip)) }
        let secrets: [(String, String)] = unavailableSecrets.map { ("secret unavailable", $0) }
        let routeLines: [(String, String)] = routes.enumerated().map { index, route in
            let conditions = [route.type.map { "type \($0)" }, route.fileName.map { "file_name \($0)" }, route.sender.map { "sender \($0)" },
                              route.subject.map { "subject \($0)" }].compactMap { $0 }
            return ("route \(index + 1)", (conditions.isEmpty ? "always" : conditions.joined(separator: ", ")) + " -> \(route.application)")
        }
        let smimeLines: [(String, String)] = (smime ?? []).map { ("smime", $0) }
        return settings + smimeLines + routeLines + expectLines + secrets + skips
    }
}
