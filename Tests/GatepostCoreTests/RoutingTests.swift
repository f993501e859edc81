import Foundation
import GatepostCatalog
import Logging
import Testing
@testable import GatepostCore

func site(_ yaml: String) throws -> RemoteSite {
    try #require(try SiteLoader(environment: [:]).parse("pop3: {host: h, user: u}\n" + yaml, file: "sites/acme.yaml"))
}

func inbound(_ type: TransferRecord.Kind = .xfer, fileName: String? = "orders.csv", sender: String = "ACME <edi@acme.example>", subject: String = "Orders") -> TransferRecord {
    TransferRecord(id: TransferRecord.newID(), type: type, fileName: fileName, site: "acme", sender: sender, subject: subject,
                   receivedAt: Date(timeIntervalSince1970: 1_795_000_000))
}

@Suite struct RouterTests {
    let rules = """
    application: fallback
    routes:
      - {type: XFER, file_name: "*.CSV", application: billing}
      - {sender: "*@partner.example", application: partner-desk}
      - {subject: "^Invoice [0-9]+", application: invoices}
      - {file_name: RECOVER, application: triage}
    """

    @Test func firstMatchingRouteWins() throws {
        let site = try site(rules)
        #expect(Router.application(for: inbound(fileName: "a.csv"), site: site) == "billing")
        #expect(Router.application(for: inbound(fileName: "a.pdf", sender: "x@partner.example"), site: site) == "partner-desk")
        #expect(Router.application(for: inbound(fileName: "a.pdf", subject: "Invoice 42 attached"), site: site) == "invoices")
        #expect(Router.application(for: inbound(fileName: "a.pdf", subject: "Re: Invoice 42"), site: site) == "fallback")
        #expect(Router.application(for: inbound(.msg, fileName: "fallback"), site: site) == "fallback")
    }

    @Test func recoverOnlyByExplicitRouteAndNeverReportsOrDuplicates() throws {
        let site = try site(rules)
        #expect(Router.application(for: inbound(fileName: "RECOVER"), site: site) == "triage")
        let plain = try GatepostCoreTests.site("application: fallback\n")
        #expect(Router.application(for: inbound(fileName: "RECOVER"), site: plain) == nil)
        #expect(Router.application(for: inbound(fileName: "DUPLICATE"), site: site) == nil)
        #expect(Router.application(for: inbound(.eerp, fileName: nil), site: site) == nil)
    }

    @Test func noRouteNoFallbackStaysUnrouted() throws {
        #expect(Router.application(for: inbound(), site: try site("")) == nil)
    }

    @Test func globsMatchWholeNamesCaseInsensitively() {
        let cases: [(String, String, Bool)] = [
            ("*.csv", "Orders.CSV", true), ("*.csv", "orders.csv.bak", false), ("order?.csv", "orders.csv", true),
            ("[a-c]*", "Billing", true), ("[!a-c]*", "billing", false), ("edi@*.example", "edi@acme.example", true),
            ("RECOVER", "RECOVER", true), ("*", "", true), ("a*b*c", "aXbYc", true), ("a*b*c", "aXbY", false),
            ("[abc", "[abc", true), ("\\*", "*", true),
        ]
        for (pattern, text, expected) in cases {
            #expect(RoutePatterns.glob(pattern, text) == expected, "\(pattern) ~ \(text)")
        }
    }

    /// Classic catastrophic patterns finish at once: neither matcher backtracks.
    @Test func patternsCannotHangDelivery() throws {
        let started = ContinuousClock.now
        let subject = String(repeating: "a", count: 35) + "!"
        for pattern in ["^(a+)+$", "^(a|a)*$", "^(a|aa)+$", "(x+x+)+y", "^(([a-z])+.)+[A-Z]([a-z])+$", "(.*a){12}"] {
            #expect(RoutePatterns.subjectPatternProblem(pattern) == nil, "\(pattern)")
            _ = RoutePatterns.subject(pattern, subject)
            _ = RoutePatterns.subject(pattern, String(repeating: "a", count: 20_000))
        }
        #expect(!RoutePatterns.glob(String(repeating: "*a", count: 30) + "b", String(repeating: "a", count: 5000)))
        // A backtracking matcher takes minutes here; these take microseconds.
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(RoutePatterns.subjectPatternProblem("(a)\\1")?.contains("back-reference") == true)
        #expect(RoutePatterns.subjectPatternProblem("(a{1000}){1000}")?.contains("255") == true)
        #expect(RoutePatterns.subjectPatternProblem("([unclosed")?.contains("not a valid") == true)
        #expect(RoutePatterns.subject("^Invoice [0-9]+", "Invoice 42 attached"))
    }

    @Test func renamePatterns() {
        let record = inbound(fileName: "../x/orders.csv")
        #expect(RenamePattern.apply("${site}-${date}-${fileName}", to: record, application: "billing") == "acme-20261118-.._x_orders.csv")
        #expect(RenamePattern.apply("${id}/../${fileName}", to: record, application: "b") == "_x_orders.csv")
        #expect(RenamePattern.unknownVariable(in: "${site}-${nope}") == "nope")
    }

    @Test func localSiteAndReferencesAreChecked() throws {
        let dir = try makeTemporaryDirectory("routing")
        try """
        kind: local-site
        applications:
          - {name: billing, folder: out/billing, command: [/bin/true], command_timeout: 5s, rename: "${id}-${fileName}"}
        """.write(toFile: dir + "/local.yaml", atomically: true, encoding: .utf8)
        try "pop3: {host: h, user: u}\napplication: billing\n".write(toFile: dir + "/good.yaml", atomically: true, encoding: .utf8)
        try "pop3: {host: h, user: u}\nroutes:\n  - {type: XFER, application: nowhere}\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let directory = try SiteLoader(environment: [:]).loadDirectory(dir)
        let local = try #require(directory.local)
        #expect(local.applications.first?.folder == dir + "/out/billing")
        #expect(local.applications.first?.command == ["/bin/true"])
        #expect(directory.sites.map(\.name) == ["good"])
        #expect(directory.errors.map(\.description) == ["\(dir)/bad.yaml:3: routes[0].application: no application `nowhere` in \(dir)/local.yaml"])
    }

    @Test func aCommandIsAListWhoseArgumentsMayNameTheTransfersFields() throws {
        let loader = SiteLoader(environment: ["IMPORT_HOME": "/opt/import"])
        func load(_ line: String) throws -> LocalSite.Application? {
            guard case .local(let local) = try loader.parseDocument("kind: local-site\napplications:\n  - " + line + "\n", file: "sites/local.yaml") else { return nil }
            return local.applications.first
        }
        let application = try load("{name: a, folder: /tmp, command: [\"${IMPORT_HOME}/bin/import\", \"--name=${GATEPOST_FILE_NAME}\"], environment: {QUEUE: orders}}")
        #expect(application?.command == ["/opt/import/bin/import", "--name=${GATEPOST_FILE_NAME}"])
        #expect(application?.environment == ["QUEUE": "orders"])
        for (line, message) in [
            ("{name: a, folder: /tmp, command: \"/usr/bin/import --queue orders\"}", "must be a list of the program and its arguments"),
            ("{name: a, folder: /tmp, command: [import, \"${GATEPOST_NOPE}\"]}", "unknown variable ${GATEPOST_NOPE}"),
            ("{name: a, folder: /tmp, environment: {GATEPOST_ID: x}}", "cannot be set"),
        ] {
            do {
                _ = try load(line)
                Issue.record("expected an error for \(line)")
            } catch let error as SiteConfigurationError {
                #expect(error.message.contains(message), "\(error.message)")
                #expect(error.line == 3)
            }
        }
    }

    @Test func deliveryFoldersAreCheckedAtLoadAndBySiteTest() async throws {
        let dir = try makeTemporaryDirectory("routing")
        try "a file".write(toFile: dir + "/blocker", atomically: true, encoding: .utf8)
        #expect(DeliveryFolders.problem(dir + "/new/folder") == nil, "created at the first delivery")
        #expect(DeliveryFolders.problem(dir + "/blocker") == "\(dir)/blocker is a file, not a folder")
        #expect(DeliveryFolders.problem(dir + "/blocker/inside") == "\(dir)/blocker/inside cannot be created: \(dir)/blocker is a file")
        try "kind: local-site\napplications:\n  - {name: billing, folder: blocker/inside}\n".write(toFile: dir + "/local.yaml", atomically: true, encoding: .utf8)
        try "pop3: {host: 127.0.0.1, port: 9, user: u, password: p, connect_timeout: 1s}\napplication: billing\n"
            .write(toFile: dir + "/acme.yaml", atomically: true, encoding: .utf8)
        let directory = try SiteLoader(environment: [:]).loadDirectory(dir)
        #expect(directory.errors.first?.description == "\(dir)/local.yaml:3: applications[0].folder: \(dir)/blocker/inside cannot be created: \(dir)/blocker is a file")

        // site test checks the folders of the site's applications before it connects.
        let site = try #require(try SiteLoader(environment: [:]).loadFile(dir + "/acme.yaml"))
        let local = LocalSite(name: "ours", applications: [
            LocalSite.Application(name: "billing", folder: dir + "/blocker", command: nil, commandTimeout: .seconds(5), rename: nil),
        ], sourceFile: dir + "/local.yaml")
        let steps = await SiteTester.run(site, local: local, logger: Logger(label: "test"))
        #expect(steps.first?.name == "delivery billing")
        #expect(steps.first?.passed == false)
        #expect(steps.first?.detail == "\(dir)/blocker is a file, not a folder")
    }

    @Test func badRenameVariableIsAConfigurationError() throws {
        #expect(throws: SiteConfigurationError.self) {
            try SiteLoader(environment: [:]).parseDocument(
                "kind: local-site\napplications:\n  - {name: a, folder: /tmp, rename: \"${nope}\"}\n", file: "sites/local.yaml"
            )
        }
    }
}

/// Delivery against a real catalog and real folders.
@Suite struct DelivererTests {
    struct Fixture {
        let dir: String
        let catalog: SQLiteCatalog
        let spoolFile: String

        init() throws {
            dir = try makeTemporaryDirectory("deliver")
            catalog = try SQLiteCatalog(path: dir + "/catalog.sqlite")
            spoolFile = dir + "/received.csv"
            try "a,b\n1,2\n".write(toFile: spoolFile, atomically: true, encoding: .utf8)
        }

        func record(_ id: String = TransferRecord.newID(), fileName: String = "orders.csv") async throws -> TransferRecord {
            var record = inbound(fileName: fileName)
            record.id = id
            record.path = spoolFile
            record.size = 8
            record.sha256 = try Deliverer.sha256(ofFile: spoolFile)
            try await catalog.commitReceived(record, uidl: nil)
            return record
        }

        func deliverer(_ applications: [LocalSite.Application]) -> Deliverer {
            Deliverer(local: LocalSite(name: "ours", applications: applications, sourceFile: dir + "/local.yaml"), catalog: catalog, logger: Logger(label: "test"))
        }

        func application(
            _ name: String = "billing", command: [String]? = nil, timeout: Duration = .seconds(10), attempts: Int = 1,
            retryDelay: Duration = .milliseconds(50)
        ) -> LocalSite.Application {
            LocalSite.Application(
                name: name, folder: dir + "/" + name, command: command, commandTimeout: timeout, rename: nil,
                attempts: attempts, retryDelay: retryDelay
            )
        }
    }

    @Test func deliversAtomicallyAndNeverOverwrites() async throws {
        let fixture = try Fixture()
        let site = try site("application: billing\n")
        let deliverer = fixture.deliverer([fixture.application()])
        try FileManager.default.createDirectory(atPath: fixture.dir + "/billing", withIntermediateDirectories: true)
        try "existing".write(toFile: fixture.dir + "/billing/orders.csv", atomically: true, encoding: .utf8)
        _ = try await fixture.record()
        let outcomes = try await deliverer.deliverPending(sites: [site])
        #expect(outcomes.map(\.state) == [.delivered])
        #expect(outcomes.first?.deliveredPath == fixture.dir + "/billing/orders (2).csv")
        #expect(try String(contentsOfFile: fixture.dir + "/billing/orders.csv", encoding: .utf8) == "existing")
        #expect(try String(contentsOfFile: fixture.dir + "/billing/orders (2).csv", encoding: .utf8) == "a,b\n1,2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/billing").sorted() == ["orders (2).csv", "orders.csv"])
        // Delivered transfers are not delivered again.
        #expect(try await deliverer.deliverPending(sites: [site]).isEmpty)
    }

    @Test func anotherNodesTransferIsDeliveredAgainOnlyWhereItsSpoolIsReachable() async throws {
        let fixture = try Fixture()
        let site = try site("application: billing\n")
        let local = LocalSite(name: "ours", applications: [fixture.application("billing")], sourceFile: fixture.dir + "/local.yaml")
        let commands = OperatorCommands(
            directory: SiteDirectory(sites: [site], errors: [], local: local), catalog: fixture.catalog, logger: Logger(label: "test")
        )
        // Node b's spool on a shared file system: readable here, so delivered from here.
        var shared = inbound(fileName: "orders.csv")
        shared.path = fixture.spoolFile
        shared.node = "node-b"
        try await fixture.catalog.commitReceived(shared, uidl: nil)
        let delivered = try await commands.redeliver(shared.id, to: "billing", actor: "alice")
        #expect(delivered.state == .delivered)
        // Node c's spool is its own: refused before anything is tried or counted.
        var elsewhere = inbound(fileName: "invoices.csv")
        elsewhere.path = "/nonexistent-\(UUID().uuidString)/in/acme/file"
        elsewhere.node = "node-c"
        try await fixture.catalog.commitReceived(elsewhere, uidl: nil)
        let reason = "transfer \(elsewhere.id)'s files are in node node-c's spool, out of this machine's reach: run this on node node-c"
        await #expect(throws: OperatorCommands.Failure.refused(reason)) { try await commands.retry(elsewhere.id, actor: "alice") }
        await #expect(throws: OperatorCommands.Failure.refused(reason)) { try await commands.redeliver(elsewhere.id, to: "billing", actor: "alice") }
        #expect(try await fixture.catalog.transfer(id: elsewhere.id)?.state == .received)
        #expect(try await fixture.catalog.deliveryAttempts(id: elsewhere.id) == 0)
    }

    /// With several nodes on one catalog, a round delivers what its node received, and what a
    /// node that is not alive received when the file reads here (spools on one shared file
    /// system); each delivery is claimed first, so that two survivors never both deliver one.
    /// A live node's transfers, a gone node's whose file is out of reach, and one another
    /// survivor has claimed are left alone. Its MDNs are taken up the same way.
    @Test func aGoneNodesWorkIsTakenUpWhereItsFilesRead() async throws {
        let fixture = try Fixture()
        let site = try site("application: billing\n")
        let local = LocalSite(name: "ours", applications: [fixture.application("billing")], sourceFile: fixture.dir + "/local.yaml")
        let catalog = fixture.catalog
        let now = Date()
        for (name, expires) in [("node-a", now + 60), ("node-c", now + 60), ("node-b", now - 5)] {
            _ = try await catalog.heartbeat(ClusterNode(name: name, instance: name, startedAt: now - 600, heartbeatAt: expires - 60, expiresAt: expires))
        }
        let unreachable = "/nonexistent-\(UUID().uuidString)/in/acme/file"
        let mdn = fixture.dir + "/mdn.eml"
        try "MDN".write(toFile: mdn, atomically: true, encoding: .utf8)
        // Each with the MDN it owes, its file beside the transfer's (or as far).
        func received(_ fileName: String, node: String, path: String) async throws -> TransferRecord {
            var record = inbound(fileName: fileName)
            record.path = path
            record.node = node
            record.size = 8
            record.sha256 = try Deliverer.sha256(ofFile: fixture.spoolFile)
            let acknowledgment = OutboxEntry(
                id: "M-" + fileName, kind: .acknowledgment, transferId: record.id, site: "acme", mailFrom: "g@ours.example",
                recipients: ["edi@acme.example"], path: path == unreachable ? unreachable + ".eml" : mdn, messageId: "\(fileName)@ours.example",
                nextAttempt: now - 1, createdAt: now - 1
            )
            try await catalog.commitReceived(record, uidl: nil, acknowledgment: acknowledgment)
            return record
        }
        let ours = try await received("ours.csv", node: "node-a", path: fixture.spoolFile)
        let gone = try await received("gone.csv", node: "node-b", path: fixture.spoolFile)
        let goneOutOfReach = try await received("far.csv", node: "node-b", path: unreachable)
        let live = try await received("live.csv", node: "node-c", path: fixture.spoolFile)
        let claimedElsewhere = try await received("claimed.csv", node: "node-b", path: fixture.spoolFile)
        #expect(try await catalog.claimDelivery(id: claimedElsewhere.id, due: now, until: now + 600))

        var round = PollRound(
            spool: try Spool(root: fixture.dir + "/spool"), catalog: catalog, local: local, allSites: [site], retry: .none, logger: Logger(label: "test")
        )
        round.node = "node-a"
        let report = await round.run([])
        let delivered = try #require(try report.deliveries?.get())
        #expect(Set(delivered.map(\.id)) == [ours.id, gone.id])
        #expect(FileManager.default.fileExists(atPath: fixture.dir + "/billing/gone.csv"))
        for untouched in [goneOutOfReach, live, claimedElsewhere] {
            #expect(try await catalog.transfer(id: untouched.id)?.state == .received, "\(untouched.fileName ?? "")")
        }

        // The MDNs owed: node b's whose file reads here are taken up, node c's are left to it,
        // and this node's own is its own (in its spool or not: its transfer is its).
        var sender = OutboxSender(sites: [], catalog: catalog, logger: Logger(label: "test"))
        sender.node = OutboxSender.NodeSpool(name: "node-a", root: fixture.dir + "/spool")
        // The site has no smtp: here, so an entry taken up fails at once: what shows it was taken.
        _ = try await sender.sendDue(now: now)
        let states = Dictionary(uniqueKeysWithValues: try await catalog.outboxEntries(state: nil, limit: 10).map { ($0.id, $0.state) })
        #expect(states == [
            "M-ours.csv": .failed, "M-gone.csv": .failed, "M-claimed.csv": .failed, "M-far.csv": .pending, "M-live.csv": .pending,
        ])
    }

    @Test func anOperatorRedeliversToAnotherApplicationAndEveryActionIsAudited() async throws {
        let fixture = try Fixture()
        let site = try site("application: billing\n")
        let local = LocalSite(name: "ours", applications: [fixture.application("billing"), fixture.application("archive")], sourceFile: fixture.dir + "/local.yaml")
        let record = try await fixture.record()
        let delivered = try await Deliverer(local: local, catalog: fixture.catalog, logger: Logger(label: "test")).deliverPending(sites: [site])
        #expect(delivered.first?.deliveredPath == fixture.dir + "/billing/orders.csv")

        let commands = OperatorCommands(
            directory: SiteDirectory(sites: [site], errors: [], local: local), catalog: fixture.catalog, logger: Logger(label: "test")
        )
        // The copy in billing/ is still there: a redelivery to archive is a copy of its own.
        let again = try await commands.redeliver(record.id, to: "archive", actor: "alice")
        #expect(again.state == .delivered)
        #expect(again.deliveredPath == fixture.dir + "/archive/orders.csv")
        #expect(try String(contentsOfFile: fixture.dir + "/archive/orders.csv", encoding: .utf8) == "a,b\n1,2\n")
        #expect(try await fixture.catalog.transfer(id: record.id)?.application == "archive")
        await #expect(throws: OperatorCommands.Failure.refused("no application named `nowhere` in local.yaml")) {
            try await commands.redeliver(record.id, to: "nowhere", actor: "alice")
        }
        try await commands.setSiteEnabled(site.name, false, actor: "bob")
        await #expect(throws: OperatorCommands.Failure.noSuchSite("ghost")) { try await commands.setSiteEnabled("ghost", false, actor: "bob") }
        let actions = try await fixture.catalog.operatorActions(site: nil, transferId: nil, limit: 10)
        #expect(actions.map { "\($0.actor) \($0.action) \($0.transferId ?? $0.site ?? "")" } == [
            "bob site.disable \(site.name)", "alice transfer.redeliver \(record.id)",
        ])
        #expect(actions.last?.detail == "archive")
    }

    @Test func aFailingCommandFailsTheTransferWithItsExitCodeAndStderr() async throws {
        let fixture = try Fixture()
        let marker = fixture.dir + "/fail-once"
        try "".write(toFile: marker, atomically: true, encoding: .utf8)
        // Fails while the marker exists (and removes it): the first attempt fails (one attempt
        // allowed: `failed`), the operator's retry succeeds.
        let script = "if [ -e \(marker) ]; then rm \(marker); echo 'import refused' >&2; exit 3; fi; test \"$GATEPOST_FILE_NAME\" = orders.csv && test -f \"$1\""
        let application = fixture.application(command: ["/bin/sh", "-c", script, "import"])
        let deliverer = fixture.deliverer([application])
        let site = try site("application: billing\n")
        let record = try await fixture.record()
        let first = try await deliverer.deliverPending(sites: [site])
        #expect(first.first?.state == .failed)
        #expect(first.first?.error == "the command `/bin/sh` exited with 3: import refused")
        #expect(try await fixture.catalog.transfer(id: record.id)?.state == .failed)

        var retry = try #require(try await fixture.catalog.transfer(id: record.id))
        retry.state = .received
        let second = try await deliverer.deliver(retry, site: site)
        #expect(second?.state == .delivered)
        // The retry reused the copy the first attempt made: still exactly one file.
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/billing") == ["orders.csv"])
    }

    @Test func failedAttemptsAreRetriedAutomaticallyWithBackoff() async throws {
        let fixture = try Fixture()
        let counter = fixture.dir + "/failures"
        try "0".write(toFile: counter, atomically: true, encoding: .utf8)
        // Fails twice, then succeeds: three attempts are enough.
        let script = "n=$(cat \(counter)); if [ $n -lt 2 ]; then echo $((n+1)) > \(counter); echo busy >&2; exit 75; fi"
        // A clock of the test's own: 60 s, then 120 s between attempts, whatever the machine does.
        let deliverer = fixture.deliverer([
            fixture.application(command: ["/bin/sh", "-c", script, "import"], attempts: 3, retryDelay: .seconds(60)),
        ])
        let site = try site("application: billing\n")
        let record = try await fixture.record()
        // Whole seconds: the catalog keeps times to the millisecond.
        let start = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let first = try await deliverer.deliverPending(sites: [site], now: start)
        #expect(first.first?.state == .routed)
        #expect(first.first?.retryAt == start.addingTimeInterval(60))
        // Not due yet: nothing is attempted.
        #expect(try await deliverer.deliverPending(sites: [site], now: start.addingTimeInterval(59)).isEmpty)
        let second = try await deliverer.deliverPending(sites: [site], now: start.addingTimeInterval(61))
        #expect(second.first?.state == .routed)
        #expect(second.first?.retryAt == start.addingTimeInterval(61 + 120), "the delay doubles")
        #expect(try await deliverer.deliverPending(sites: [site], now: start.addingTimeInterval(61 + 119)).isEmpty)
        #expect(try await deliverer.deliverPending(sites: [site], now: start.addingTimeInterval(61 + 121)).first?.state == .delivered)
        #expect(try await fixture.catalog.transfer(id: record.id)?.state == .delivered)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/billing") == ["orders.csv"])
        // The transfer's history: each attempt, when, and how it ended.
        let history = try await fixture.catalog.deliveryHistory(id: record.id)
        #expect(history.map(\.outcome) == [.retrying, .retrying, .delivered])
        #expect(history.map(\.at) == [start, start.addingTimeInterval(61), start.addingTimeInterval(61 + 121)])
        #expect(history.map(\.retryAt) == [start.addingTimeInterval(60), start.addingTimeInterval(61 + 120), nil])
        #expect(history.prefix(2).allSatisfy { $0.error?.contains("busy") == true }, "\(history)")
        #expect(history.last?.deliveredPath == fixture.dir + "/billing/orders.csv")
    }

    @Test func aCommandThatHangsIsKilled() async throws {
        let fixture = try Fixture()
        let deliverer = fixture.deliverer([fixture.application(command: ["/bin/sh", "-c", "sleep 30", "hang"], timeout: .milliseconds(300))])
        _ = try await fixture.record()
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        #expect(outcomes.first?.state == .failed)
        #expect(outcomes.first?.error?.contains("ran longer than") == true)
    }

    @Test func aCommandGetsACleanEnvironmentAndItsFieldsInTheArguments() async throws {
        let fixture = try Fixture()
        // A partner password given to gatepost as an environment variable.
        setenv("ACME_POP3_PASSWORD_FOR_ENV_TEST", "hunter2", 1)
        let dump = fixture.dir + "/env.txt"
        var application = fixture.application(command: ["/bin/sh", "-c", "env > \(dump); echo \"$1\" >> \(dump)", "import", "${GATEPOST_FILE_NAME}"])
        application.environment = ["IMPORT_QUEUE": "orders"]
        let deliverer = fixture.deliverer([application])
        _ = try await fixture.record()
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        #expect(outcomes.first?.state == .delivered, "\(outcomes.first?.error ?? "")")
        let lines = try String(contentsOfFile: dump, encoding: .utf8).split(separator: "\n").map(String.init)
        let names = Set(lines.dropLast().compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
        #expect(!lines.contains { $0.contains("hunter2") }, "no secret of gatepost's environment")
        #expect(lines.contains("IMPORT_QUEUE=orders"))
        #expect(lines.contains("GATEPOST_FILE_NAME=orders.csv"))
        #expect(lines.last == "orders.csv", "${GATEPOST_FILE_NAME} in the arguments is the transfer's")
        let allowed = CommandEnvironment.inherited.union(CommandEnvironment.fieldNames).union(["IMPORT_QUEUE", "PWD", "SHLVL", "_", "OLDPWD"])
        #expect(names.subtracting(allowed).filter { !$0.hasPrefix("LC_") }.isEmpty, "only the allowlist: \(names.subtracting(allowed).sorted())")
    }

    @Test func aCommandIsDoneWhenItExitsWhateverItLeftInTheBackground() async throws {
        let fixture = try Fixture()
        let marker = fixture.dir + "/background.pid"
        // Exits 0 at once, leaving a child that holds its output open for 60 s.
        let deliverer = fixture.deliverer([
            fixture.application(command: ["/bin/sh", "-c", "sleep 60 & echo $! > \(marker); exit 0", "import"], timeout: .seconds(50)),
        ])
        _ = try await fixture.record()
        let started = ContinuousClock.now
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        #expect(outcomes.first?.state == .delivered, "\(outcomes.first?.error ?? "")")
        // Done in about a second; held up, it would take the child's 60 s (or the 50 s timeout).
        // The bound sits between the two, far from both: the delivery's fsyncs can take
        // seconds while the 1 GiB test writes beside it.
        #expect(ContinuousClock.now - started < .seconds(30), "not held up by the background child")
        // The background child ended with the command.
        let pid = try #require(pid_t(try String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        var gone = false
        for _ in 0..<100 where !gone {
            gone = kill(pid, 0) != 0 || ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z ") ?? true)
            if !gone { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(gone)
    }

    @Test func aTimeoutIsKeptEvenWhenAChildLeftTheProcessGroup() async throws {
        let fixture = try Fixture()
        let marker = fixture.dir + "/escaped.pid"
        // The escaped child holds the output open for 60 s; the command itself hangs.
        let script = "setsid sh -c 'echo $$ > \(marker); exec sleep 60' & sleep 60"
        let deliverer = fixture.deliverer([fixture.application(command: ["/bin/sh", "-c", script, "hang"], timeout: .milliseconds(500))])
        _ = try await fixture.record()
        let started = ContinuousClock.now
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        // About a second past the timeout; unbounded, it would take the child's 60 s. The bound
        // sits between the two, far from both (the delivery's fsyncs can take seconds under load).
        #expect(ContinuousClock.now - started < .seconds(30), "the timeout bounds the delivery")
        #expect(outcomes.first?.state == .failed)
        #expect(outcomes.first?.error?.contains("ran longer than") == true)
        if let text = try? String(contentsOfFile: marker, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGKILL)
        }
    }

    @Test func deliveredFilesAndFoldersGetTheApplicationsModesAndGroup() async throws {
        let fixture = try Fixture()
        var application = fixture.application()
        application.fileMode = 0o644
        application.folderMode = 0o755
        let ownGroup = getegid()
        application.group = UInt32(ownGroup)
        let deliverer = fixture.deliverer([application])
        _ = try await fixture.record()
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        let path = try #require(outcomes.first?.deliveredPath)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o644, "not the 0600 gatepost's umask would give")
        #expect(info.st_gid == ownGroup)
        #expect(stat(fixture.dir + "/billing", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o755)
    }

    @Test func aDeliveryFolderThatIsAFileIsSaidInWords() async throws {
        let fixture = try Fixture()
        try "not a folder".write(toFile: fixture.dir + "/billing", atomically: true, encoding: .utf8)
        let deliverer = fixture.deliverer([fixture.application()])
        _ = try await fixture.record()
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        #expect(outcomes.first?.state == .failed)
        #expect(outcomes.first?.error == "the delivery folder \(fixture.dir)/billing is a file, not a folder")
        #expect(outcomes.first?.error?.contains("NSCocoaErrorDomain") == false)
    }

    @Test func modesAndGroupAreReadFromTheLocalSite() throws {
        let loader = SiteLoader(environment: [:])
        let groupName = String(cString: getgrgid(getegid()).pointee.gr_name)
        guard case .local(let local) = try loader.parseDocument(
            "kind: local-site\napplications:\n  - {name: a, folder: out, file_mode: \"0644\", folder_mode: \"0755\", group: \(groupName)}\n",
            file: "sites/local.yaml"
        ) else { Issue.record("not a local site"); return }
        let application = try #require(local.applications.first)
        #expect(application.fileMode == 0o644 && application.folderMode == 0o755 && application.group == UInt32(getegid()))
        #expect(application.folder.hasPrefix("/"), "an absolute folder: \(application.folder)")
        for (line, message) in [
            ("{name: a, folder: /tmp, file_mode: \"rw-r--r--\"}", "must be an octal mode"),
            ("{name: a, folder: /tmp, group: no-such-group-here}", "no group `no-such-group-here`"),
        ] {
            #expect(throws: SiteConfigurationError.self) {
                _ = try loader.parseDocument("kind: local-site\napplications:\n  - " + line + "\n", file: "sites/local.yaml")
            }
            do {
                _ = try loader.parseDocument("kind: local-site\napplications:\n  - " + line + "\n", file: "sites/local.yaml")
            } catch let error as SiteConfigurationError {
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }

    @Test func wholeMessagesEndInEMLAndTextsInTXTRenamedOrNot() throws {
        let fixture = try Fixture()
        let deliverer = fixture.deliverer([fixture.application()])
        var application = fixture.application()
        var recover = inbound(fileName: TransferRecord.recoverFileName)
        recover.id = "T1"
        #expect(deliverer.deliveryName(recover, application: application) == "RECOVER-T1.eml")
        let message = TransferRecord(id: "T2", type: .msg, fileName: "billing", site: "acme")
        #expect(deliverer.deliveryName(message, application: application) == "billing-T2.txt")
        application.rename = "${site}-${id}"
        #expect(deliverer.deliveryName(message, application: application) == "acme-T2.txt")
        #expect(deliverer.deliveryName(recover, application: application) == "acme-T1.eml")
        application.rename = "${site}-${id}.txt"
        #expect(deliverer.deliveryName(message, application: application) == "acme-T2.txt", "not .txt.txt")
        #expect(deliverer.deliveryName(inbound(fileName: "orders.csv"), application: application).hasSuffix(".txt"), "a file is renamed as asked")
    }

    @Test func aCrashAfterTheLinkDoesNotDeliverTwice() async throws {
        let fixture = try Fixture()
        let deliverer = fixture.deliverer([fixture.application()])
        let record = try await fixture.record()
        // What a crash right after link() leaves: the target recorded and in place, state routed.
        try FileManager.default.createDirectory(atPath: fixture.dir + "/billing", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture.spoolFile, toPath: fixture.dir + "/billing/orders.csv")
        try await fixture.catalog.recordDeliveryTarget(id: record.id, application: "billing", target: fixture.dir + "/billing/orders.csv")
        try await fixture.catalog.updateDelivery(id: record.id, state: .routed, application: "billing", error: nil, deliveredPath: nil)
        let outcomes = try await deliverer.deliverPending(sites: [try site("application: billing\n")])
        #expect(outcomes.map(\.state) == [.delivered])
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/billing") == ["orders.csv"])
    }

    @Test func unroutedTransfersStayReceived() async throws {
        let fixture = try Fixture()
        let record = try await fixture.record()
        #expect(try await fixture.deliverer([fixture.application()]).deliverPending(sites: [try site("")]).isEmpty)
        #expect(try await fixture.catalog.transfer(id: record.id)?.state == .received)
    }

    @Test func anUnknownApplicationFailsClearly() async throws {
        let fixture = try Fixture()
        _ = try await fixture.record()
        let outcomes = try await fixture.deliverer([]).deliverPending(sites: [try site("application: ghost\n")])
        #expect(outcomes.first?.error?.hasPrefix("no application `ghost`") == true)
    }
}
