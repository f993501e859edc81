import Foundation
import GatepostCatalog
import GatepostCore
import Hummingbird
import HummingbirdBcrypt
import HummingbirdTesting
import Logging
import Testing
@testable import GatepostConsole

/// Polls nothing: says what it was asked. The real poll-now runs against Dovecot in the
/// browser test.
struct RecordingPolls: PollControl {
    func pollNow(_ site: RemoteSite) async -> PollNowOutcome {
        PollNowOutcome(site: site.name, messages: 0, bytes: 0, transfers: [], error: nil)
    }

    func running() -> [RunningPoll] { [RunningPoll(site: "acme", started: Date(timeIntervalSince1970: 0), messages: 3, bytes: 300)] }
}

/// A console over an in-memory catalog with two sites, and users of each role.
struct ConsoleFixture {
    let catalog = InMemoryCatalog()
    let directory: SiteDirectory
    let accounts: ConsoleAccounts?
    let spool: String
    static let operatorPassword = "correct horse"
    static let viewerPassword = "battery staple"
    static let viewerToken = "gp_viewer_token_for_tests"

    init(accounts: Bool = true) throws {
        spool = NSTemporaryDirectory() + "gatepost-console-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let loader = SiteLoader(environment: [:])
        let acme = try #require(try loader.parse("pop3: {host: pop.acme.example, user: u, password: p}\n", file: spool + "/acme.yaml"))
        // bcorp's SMTP server is a port nobody listens on: a send is queued and waits to retry.
        let bcorp = try #require(try loader.parse(
            "pop3: {host: pop.bcorp.example, user: u, password: p}\nsmtp: {host: 127.0.0.1, port: 9, security: none, from: gateway@ours.example}\n",
            file: spool + "/bcorp.yaml"
        ))
        directory = SiteDirectory(sites: [acme, bcorp], errors: [], local: nil)
        self.accounts = accounts ? ConsoleAccounts(
            users: [
                .init(name: "olivia", role: .operator, passwordHash: Bcrypt.hash(Self.operatorPassword, cost: 4)),
                .init(name: "victor", role: .viewer, passwordHash: Bcrypt.hash(Self.viewerPassword, cost: 4)),
            ],
            tokens: [.init(name: "grafana", role: .viewer, sha256: ConsoleAuthenticator.sha256(Self.viewerToken))]
        ) : nil
    }

    var environment: ConsoleEnvironment {
        let directory = directory
        return ConsoleEnvironment(
            catalog: catalog, sites: { directory }, polls: RecordingPolls(), accounts: accounts,
            logger: Logger(label: "test"), mode: "test", spool: try? Spool(root: spool + "/spool")
        )
    }

    func application() -> some ApplicationProtocol {
        Application(router: ConsoleServer.router(environment, sessions: MemoryPersistDriver()))
    }

    /// A stored inbound transfer with a kept file.
    /// `path`: where the record says its file is, when not where it is written (in the spool).
    @discardableResult
    func addTransfer(
        _ id: String, fileName: String, at seconds: TimeInterval, site: String = "acme", body: String = "a;b\n",
        node: String? = nil, path recordedPath: String? = nil
    ) async throws -> TransferRecord {
        let path = spool + "/" + id
        try body.write(toFile: path, atomically: true, encoding: .utf8)
        var record = TransferRecord(
            id: id, type: .xfer, fileName: fileName, site: site, state: .delivered, sender: "edi@acme.example",
            subject: "Invoices", size: Int64(body.utf8.count), sha256: ConsoleAuthenticator.sha256(body), path: recordedPath ?? path,
            receivedAt: Date(timeIntervalSince1970: 1_764_000_000 + seconds)
        )
        record.node = node
        try await catalog.commitReceived(record, uidl: id)
        return record
    }
}

/// A browser's side of a session: its cookie and the CSRF token of the last page.
struct Browser {
    var cookie: String?
    var csrf: String?

    var headers: HTTPFields {
        var fields = HTTPFields()
        if let cookie { fields[.cookie] = cookie }
        return fields
    }

    /// Keeps the session cookie and the page's CSRF token.
    mutating func take(_ response: TestResponse) {
        if let setCookie = response.headers[.setCookie], let pair = setCookie.split(separator: ";").first {
            cookie = String(pair)
        }
        let page = String(buffer: response.body)
        if let range = page.range(of: "name=csrf value=\"") {
            csrf = String(page[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    func form(_ fields: [String: String], csrf include: Bool = true) -> (HTTPFields, ByteBuffer) {
        var headers = self.headers
        headers[.contentType] = "application/x-www-form-urlencoded"
        var all = fields
        if include, let csrf { all["csrf"] = csrf }
        let body = all.map { "\($0.key)=\(HTML.component($0.value))" }.joined(separator: "&")
        return (headers, ByteBuffer(string: body))
    }
}

@Suite struct ConsoleAPITests {
    @Test func healthNeedsNobodyAndEverythingElseNeedsSomeone() async throws {
        let fixture = try ConsoleFixture()
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"status\":\"ok\""))
            }
            try await client.execute(uri: "/api/v1/sites", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.setCookie] == nil, "a program gets no session: requests cannot fill memory with them")
            }
            try await client.execute(uri: "/login", method: .get) { response in
                #expect(response.headers[.setCookie]?.contains("SameSite=Strict") == true, "\(response.headers)")
                #expect(response.headers[.setCookie]?.contains("HttpOnly") == true)
            }
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .seeOther)
                #expect(response.headers[.location]?.hasPrefix("/login") == true)
            }
            try await client.execute(uri: "/api/v1/sites", method: .get, headers: [.authorization: "Bearer nope"]) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func aViewerReadsButCannotDisableAndAnOperatorCan() async throws {
        let fixture = try ConsoleFixture()
        try await fixture.application().test(.router) { client in
            // The viewer's API token reads the sites...
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/sites", method: .get, headers: token) { response in
                #expect(response.status == .ok)
                let body = String(buffer: response.body)
                #expect(body.contains("\"name\":\"acme\"") && body.contains("\"name\":\"bcorp\""), "\(body)")
                #expect(body.contains("\"running\":[{"), "polls in progress")
            }
            // ...but may not disable one.
            try await client.execute(uri: "/api/v1/sites/acme/disable", method: .post, headers: token) { response in
                #expect(response.status == .forbidden)
                #expect(String(buffer: response.body).contains("only an operator"))
            }
            #expect(try await fixture.catalog.siteStates()["acme"]?.enabled == nil)

            // The viewer logged in to the console: no Disable button, and the form is refused.
            var viewer = Browser()
            try await client.execute(uri: "/login", method: .get) { viewer.take($0) }
            let (headers, body) = viewer.form(["name": "victor", "password": ConsoleFixture.viewerPassword])
            try await client.execute(uri: "/login", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .seeOther)
                viewer.take(response)
            }
            try await client.execute(uri: "/", method: .get, headers: viewer.headers) { response in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains(">Disable<"))
                viewer.take(response)
            }
            let (disableHeaders, disableBody) = viewer.form([:])
            try await client.execute(uri: "/sites/acme/disable", method: .post, headers: disableHeaders, body: disableBody) { response in
                #expect(response.status == .forbidden)
            }
            #expect(try await fixture.catalog.siteStates()["acme"]?.enabled == nil)

            // The operator can, and the action is recorded with who did it.
            var operatorBrowser = Browser()
            try await client.execute(uri: "/login", method: .get) { operatorBrowser.take($0) }
            let (loginHeaders, loginBody) = operatorBrowser.form(["name": "olivia", "password": ConsoleFixture.operatorPassword])
            try await client.execute(uri: "/login", method: .post, headers: loginHeaders, body: loginBody) { operatorBrowser.take($0) }
            try await client.execute(uri: "/", method: .get, headers: operatorBrowser.headers) { response in
                #expect(String(buffer: response.body).contains(">Disable<"))
                operatorBrowser.take(response)
            }
            let (h, b) = operatorBrowser.form([:])
            try await client.execute(uri: "/sites/acme/disable", method: .post, headers: h, body: b) { response in
                #expect(response.status == .seeOther)
            }
            #expect(try await fixture.catalog.siteStates()["acme"]?.enabled == false)
            let actions = try await fixture.catalog.operatorActions(site: "acme", transferId: nil, limit: 5)
            #expect(actions.map { "\($0.actor) \($0.action)" } == ["olivia site.disable"])
        }
    }

    @Test func openAlertsAreListedShownFirstAndAcknowledgedByAnOperatorOnly() async throws {
        let fixture = try ConsoleFixture()
        let failing = Alert(key: "site-failing:acme:polls", kind: "site-failing", site: "acme", summary: "acme: 3 polls in a row failed", openedAt: .distantPast)
        let id = try #require(try await fixture.catalog.updateAlerts(opening: [failing], resolving: [], at: Date()).opened.first?.id)
        try await fixture.application().test(.router) { client in
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/alerts", method: .get, headers: token) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"kind\":\"site-failing\""))
            }
            try await client.execute(uri: "/api/v1/alerts?state=closed", method: .get, headers: token) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/api/v1/alerts/\(id)/acknowledge", method: .post, headers: token) { response in
                #expect(response.status == .forbidden, "a viewer reads, does not acknowledge")
            }
            try await client.execute(uri: "/api/v1/status", method: .get, headers: token) { response in
                #expect(String(buffer: response.body).contains("\"alerts\":[{"))
            }

            var operatorBrowser = Browser()
            try await client.execute(uri: "/login", method: .get) { operatorBrowser.take($0) }
            let (loginHeaders, loginBody) = operatorBrowser.form(["name": "olivia", "password": ConsoleFixture.operatorPassword])
            try await client.execute(uri: "/login", method: .post, headers: loginHeaders, body: loginBody) { operatorBrowser.take($0) }
            try await client.execute(uri: "/", method: .get, headers: operatorBrowser.headers) { response in
                let page = String(buffer: response.body)
                let alerts = try #require(page.range(of: "Open alerts"))
                let sites = try #require(page.range(of: ">Disable<"))
                #expect(alerts.lowerBound < sites.lowerBound, "alerts come before the sites")
                #expect(page.contains("acme: 3 polls in a row failed") && page.contains(">Acknowledge<"))
                operatorBrowser.take(response)
            }
            let (h, b) = operatorBrowser.form([:])
            try await client.execute(uri: "/alerts/\(id)/acknowledge", method: .post, headers: h, body: b) { response in
                #expect(response.status == .seeOther)
            }
            try await client.execute(uri: "/alerts/999/acknowledge", method: .post, headers: h, body: b) { response in
                #expect(response.status == .notFound)
            }
        }
        let alert = try #require(try await fixture.catalog.alerts(openOnly: true, limit: 1).first)
        #expect(alert.acknowledgedBy == "olivia" && alert.isOpen, "acknowledged, still open until it clears")
        let actions = try await fixture.catalog.operatorActions(site: "acme", transferId: nil, limit: 5)
        #expect(actions.map { "\($0.actor) \($0.action)" } == ["olivia alert.acknowledge"])
    }

    /// A node gone for good is forgotten from the dashboard by an operator (audited, its alert
    /// resolved); a live node is refused with the reason, a viewer may not, and the button is
    /// only on a gone node.
    @Test func anOperatorForgetsAGoneNodeFromTheConsole() async throws {
        let fixture = try ConsoleFixture()
        let now = Date()
        for (name, expires) in [("node-a", now + 60), ("node-b", now - 5)] {
            _ = try await fixture.catalog.heartbeat(ClusterNode(name: name, instance: name, startedAt: now - 600, heartbeatAt: expires - 60, expiresAt: expires))
        }
        try await fixture.application().test(.router) { client in
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/nodes/node-b/forget", method: .post, headers: token) { response in
                #expect(response.status == .forbidden, "a viewer reads, does not forget")
            }
            var browser = Browser()
            try await client.execute(uri: "/login", method: .get) { browser.take($0) }
            let (loginHeaders, loginBody) = browser.form(["name": "olivia", "password": ConsoleFixture.operatorPassword])
            try await client.execute(uri: "/login", method: .post, headers: loginHeaders, body: loginBody) { browser.take($0) }
            try await client.execute(uri: "/", method: .get, headers: browser.headers) { response in
                let page = String(buffer: response.body)
                #expect(page.contains("action=\"/nodes/node-b/forget\""), "a gone node has the button")
                #expect(!page.contains("/nodes/node-a/forget"), "a live node has none")
                browser.take(response)
            }
            let (headers, body) = browser.form([:])
            try await client.execute(uri: "/nodes/node-a/forget", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .conflict)
                #expect(String(buffer: response.body).contains("node node-a is alive"))
            }
            try await client.execute(uri: "/nodes/node-b/forget", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .seeOther)
            }
            try await client.execute(uri: "/nodes/node-z/forget", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .notFound)
            }
        }
        #expect(try await fixture.catalog.clusterNodes().map(\.name) == ["node-a"])
        let actions = try await fixture.catalog.operatorActions(site: nil, transferId: nil, limit: 5)
        #expect(actions.map { "\($0.actor) \($0.action) \($0.detail ?? "")" } == ["olivia node.forget node-b"])
    }

    @Test func aFormWithoutItsSessionsCSRFTokenIsRefused() async throws {
        let fixture = try ConsoleFixture()
        try await fixture.application().test(.router) { client in
            var browser = Browser()
            try await client.execute(uri: "/login", method: .get) { browser.take($0) }
            let (loginHeaders, loginBody) = browser.form(["name": "olivia", "password": ConsoleFixture.operatorPassword])
            try await client.execute(uri: "/login", method: .post, headers: loginHeaders, body: loginBody) { browser.take($0) }
            // No token, a wrong one, another session's: all refused, nothing changed.
            let (noToken, noTokenBody) = browser.form([:], csrf: false)
            try await client.execute(uri: "/sites/acme/disable", method: .post, headers: noToken, body: noTokenBody) { response in
                #expect(response.status == .forbidden)
                #expect(String(buffer: response.body).contains("CSRF"))
            }
            var forged = browser
            forged.csrf = String(repeating: "0", count: 64)
            let (forgedHeaders, forgedBody) = forged.form([:])
            try await client.execute(uri: "/sites/acme/disable", method: .post, headers: forgedHeaders, body: forgedBody) { response in
                #expect(response.status == .forbidden)
            }
            // The JSON API with the session cookie needs the header too.
            try await client.execute(uri: "/api/v1/sites/acme/disable", method: .post, headers: browser.headers) { response in
                #expect(response.status == .forbidden)
            }
            #expect(try await fixture.catalog.siteStates()["acme"]?.enabled == nil)
            // The login rotated the token: the one of the login page no longer works.
            let (stale, staleBody) = browser.form([:])
            try await client.execute(uri: "/sites/acme/disable", method: .post, headers: stale, body: staleBody) { response in
                #expect(response.status == .forbidden)
            }
            try await client.execute(uri: "/", method: .get, headers: browser.headers) { browser.take($0) }
            var headers = browser.headers
            headers[.csrfToken] = browser.csrf
            try await client.execute(uri: "/api/v1/sites/acme/disable", method: .post, headers: headers) { response in
                #expect(response.status == .ok)
            }
            #expect(try await fixture.catalog.siteStates()["acme"]?.enabled == false)
        }
    }

    @Test func aWrongPasswordLogsNobodyIn() async throws {
        let fixture = try ConsoleFixture()
        try await fixture.application().test(.router) { client in
            var browser = Browser()
            try await client.execute(uri: "/login", method: .get) { browser.take($0) }
            for (name, password) in [("olivia", "wrong"), ("nobody", ConsoleFixture.operatorPassword)] {
                let (headers, body) = browser.form(["name": name, "password": password])
                try await client.execute(uri: "/login", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .unauthorized)
                    #expect(String(buffer: response.body).contains("Wrong name or password."))
                }
            }
            try await client.execute(uri: "/api/v1/sites", method: .get, headers: browser.headers) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func transfersAreSearchedAndPagedNewestFirst() async throws {
        let fixture = try ConsoleFixture()
        for index in 0..<7 {
            _ = try await fixture.addTransfer("T\(index)", fileName: index % 2 == 0 ? "INV-\(index).csv" : "orders-\(index).xml", at: TimeInterval(index))
        }
        try await fixture.application().test(.router) { client in
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            struct Page: Decodable {
                var transfers: [TransferRecord]
                var next: String?
            }
            func page(_ query: String) async throws -> Page {
                try await client.execute(uri: "/api/v1/transfers?\(query)", method: .get, headers: token) { response in
                    #expect(response.status == .ok, "\(String(buffer: response.body))")
                    let decoder = JSONDecoder()
                    decoder.dateDecodingStrategy = .iso8601
                    return try decoder.decode(Page.self, from: Data(buffer: response.body))
                }
            }
            let first = try await page("fileName=inv-*.csv&limit=2")
            #expect(first.transfers.map(\.id) == ["T6", "T4"])
            let second = try await page("fileName=inv-*.csv&limit=2&after=\(HTML.component(try #require(first.next)))")
            #expect(second.transfers.map(\.id) == ["T2", "T0"])
            let third = try await page("fileName=inv-*.csv&limit=2&after=\(HTML.component(try #require(second.next)))")
            #expect(third.transfers.isEmpty && third.next == nil)
            #expect(try await page("order=oldest&limit=3").transfers.map(\.id) == ["T0", "T1", "T2"])
            try await client.execute(uri: "/api/v1/transfers?since=yesterday", method: .get, headers: token) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("is not a date"))
            }
            try await client.execute(uri: "/api/v1/transfers?limit=100000", method: .get, headers: token) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test func anotherNodesFileIsServedWhenItsSpoolIsSharedElseThatNodesConsoleIs() async throws {
        let fixture = try ConsoleFixture()
        // Both held by node-b: T1 in a spool this node reads too (a shared mount), T2 not.
        try await fixture.addTransfer("T1", fileName: "on-the-shared-mount.csv", at: 0, body: "1;2\n", node: "node-b")
        try await fixture.addTransfer(
            "T2", fileName: "on-node-b-only.csv", at: 1, node: "node-b", path: "/nonexistent-\(UUID().uuidString)/in/acme/T2"
        )
        let now = Date()
        _ = try await fixture.catalog.heartbeat(ClusterNode(
            name: "node-b", instance: "i", startedAt: now, heartbeatAt: now, expiresAt: now + 60, consoleURL: "https://b.example:8443/"
        ))
        var environment = fixture.environment
        environment.node = "node-a"
        let application = Application(router: ConsoleServer.router(environment, sessions: MemoryPersistDriver()))
        try await application.test(.router) { client in
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/transfers/T1/file", method: .get, headers: token) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "1;2\n")
            }
            try await client.execute(uri: "/api/v1/transfers/T2/file", method: .get, headers: token) { response in
                #expect(response.status == .temporaryRedirect)
                #expect(response.headers[.location] == "https://b.example:8443/api/v1/transfers/T2/file")
            }
        }
    }

    @Test func aTransferIsShownAndItsFileDownloadsWithItsNameAndHash() async throws {
        let fixture = try ConsoleFixture()
        let record = try await fixture.addTransfer("T1", fileName: "Bestellung Müller \"42\".csv", at: 0, body: "1;2;3\n")
        try await fixture.application().test(.router) { client in
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/transfers/T1/file", method: .get, headers: token) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "1;2;3\n")
                #expect(response.headers[.init("X-Content-SHA256")!] == record.sha256)
                let disposition = response.headers[.contentDisposition] ?? ""
                #expect(disposition == "attachment; filename=\"Bestellung M_ller _42_.csv\"; filename*=UTF-8''Bestellung%20M%C3%BCller%20%2242%22.csv", "\(disposition)")
            }
            try await client.execute(uri: "/api/v1/transfers/T1", method: .get, headers: token) { response in
                let body = String(buffer: response.body)
                #expect(body.contains("\"deliveryAttempts\":0") && body.contains("\"deliveries\":[]") && body.contains("\"outbox\":[]"), "\(body)")
            }
            try await client.execute(uri: "/api/v1/transfers/T9", method: .get, headers: token) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test func withoutAccountsTheLocalMachineOperatesButStillNeedsTheCSRFToken() async throws {
        let fixture = try ConsoleFixture(accounts: false)
        try await fixture.application().test(.router) { client in
            var browser = Browser()
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("local (operator)"))
                browser.take(response)
            }
            // A page of another site posting to the console has no token.
            try await client.execute(uri: "/api/v1/sites/acme/disable", method: .post) { response in
                #expect(response.status == .forbidden)
            }
            let (headers, body) = browser.form([:])
            try await client.execute(uri: "/sites/acme/disable", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .seeOther)
            }
            #expect(try await fixture.catalog.operatorActions(site: "acme", transferId: nil, limit: 1).first?.actor == "local")
        }
    }

    @Test func metricsAreReadFromTheCatalogAtEachScrapeByAViewer() async throws {
        let fixture = try ConsoleFixture()
        try await fixture.catalog.setSiteEnabled("bcorp", enabled: false)
        try await fixture.catalog.recordPoll(site: "acme", at: Date(timeIntervalSince1970: 1_764_000_000), error: nil, errorCategory: nil, messages: 2, bytes: 20, nextPoll: nil)
        var outbound = TransferRecord(id: "T9", direction: .outbound, type: .xfer, fileName: "a.csv", site: "acme", state: .queued,
                                      messageId: "T9@ours.example", recipients: ["edi@acme.example"], receivedAt: Date().addingTimeInterval(-600))
        outbound.ack = .requested
        try await fixture.catalog.commitOutbound(outbound, message: OutboxEntry(
            id: "T9", kind: .file, transferId: "T9", site: "acme", mailFrom: "g@ours.example", recipients: ["edi@acme.example"],
            path: "/nowhere", messageId: "T9@ours.example", nextAttempt: Date(), createdAt: Date().addingTimeInterval(-600)
        ))
        try await fixture.catalog.outboxSent(OutboxEntry(
            id: "T9", kind: .file, transferId: "T9", site: "acme", mailFrom: "g@ours.example", recipients: ["edi@acme.example"],
            path: "/nowhere", messageId: "T9@ours.example"
        ), at: Date(), refused: [], followUp: nil)
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(text.contains("gatepost_site_enabled{site=\"acme\"} 1"), "\(text)")
                #expect(text.contains("gatepost_site_enabled{site=\"bcorp\"} 0"))
                #expect(text.contains("gatepost_site_up{site=\"acme\"} 1"))
                #expect(text.contains("gatepost_site_last_success_timestamp_seconds{site=\"acme\"} 1764000000"))
                #expect(text.contains("gatepost_outbox_pending 0"))
                #expect(text.contains(#"gatepost_alerts_open{kind="site-failing"} 0"#), "\(text)")
                let oldest = text.split(separator: "\n").first { $0.hasPrefix("gatepost_oldest_unacknowledged_seconds ") }
                let seconds = oldest.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
                #expect(seconds >= 600 && seconds < 3600, "the sent transfer queued 10 minutes ago: \(oldest ?? "none")")
            }
        }
    }

    @Test func anOperatorSendsAFileThroughTheAPIStreamedToTheSpool() async throws {
        let fixture = try ConsoleFixture()
        let payload = ByteBuffer(bytes: (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let expected = ConsoleAuthenticator.sha256Hex(Array(payload.readableBytesView))
        try await fixture.application().test(.router) { client in
            let viewer: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/sites/bcorp/send?fileName=a.bin&to=edi@bcorp.example", method: .post, headers: viewer, body: payload) { response in
                #expect(response.status == .forbidden)
            }
            // An operator's session (the JSON API with its CSRF token).
            var browser = Browser()
            try await client.execute(uri: "/login", method: .get) { browser.take($0) }
            let (h, b) = browser.form(["name": "olivia", "password": ConsoleFixture.operatorPassword])
            try await client.execute(uri: "/login", method: .post, headers: h, body: b) { browser.take($0) }
            try await client.execute(uri: "/", method: .get, headers: browser.headers) { browser.take($0) }
            var headers = browser.headers
            headers[.csrfToken] = browser.csrf
            try await client.execute(uri: "/api/v1/sites/acme/send?fileName=a.bin&to=edi@acme.example", method: .post, headers: headers, body: payload) { response in
                #expect(response.status == .unprocessableContent)
                #expect(String(buffer: response.body).contains("no smtp: settings"), "\(String(buffer: response.body))")
            }
            try await client.execute(uri: "/api/v1/sites/bcorp/send?fileName=a.bin", method: .post, headers: headers, body: payload) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/api/v1/sites/bcorp/send?fileName=../../etc/Bestellung.bin&to=edi@bcorp.example&to=ops@bcorp.example", method: .post, headers: headers, body: payload) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let body = String(buffer: response.body)
                #expect(body.contains("\"retrying\":1"), "the server does not answer: waits to retry: \(body)")
                #expect(body.contains("\"sha256\":\"\(expected)\""), "the bytes sent are the bytes uploaded")
                #expect(body.contains("\"fileName\":\"Bestellung.bin\""), "a hostile name loses its path: \(body)")
            }
            // The entry waits in the outbox for its retry.
            try await client.execute(uri: "/api/v1/outbox?state=pending", method: .get, headers: viewer) { response in
                let body = String(buffer: response.body)
                #expect(response.status == .ok && body.contains("\"kind\":\"file\"") && body.contains("\"attempts\":1"), "\(body)")
            }
            try await client.execute(uri: "/api/v1/outbox?state=lost", method: .get, headers: viewer) { response in
                #expect(response.status == .badRequest)
            }
        }
        let outbound = try #require(try await fixture.catalog.transfers(TransferFilter(direction: .outbound)).first)
        #expect(outbound.recipients == ["edi@bcorp.example", "ops@bcorp.example"])
        #expect(try await fixture.catalog.operatorActions(site: "bcorp", transferId: nil, limit: 5).map(\.action) == ["outbound.send"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.spool + "/spool/uploads").isEmpty, "the upload is removed once queued")
    }

    @Test func aMessageKeptWholeShowsItsPartTree() async throws {
        let fixture = try ConsoleFixture()
        let message = """
        From: edi@acme.example\r
        Subject: two files\r
        Content-Type: multipart/mixed; boundary=b\r
        \r
        --b\r
        Content-Type: text/plain\r
        \r
        Two files.\r
        --b\r
        Content-Type: text/csv; name=a.csv\r
        Content-Disposition: attachment; filename=a.csv\r
        \r
        1;2\r
        --b\r
        Content-Type: application/pdf\r
        Content-Disposition: attachment; filename="b.pdf"\r
        Content-Transfer-Encoding: base64\r
        \r
        JVBERi0=\r
        --b--\r

        """
        _ = try await fixture.addTransfer("T1", fileName: TransferRecord.recoverFileName, at: 0, body: message)
        _ = try await fixture.addTransfer("T2", fileName: "a.csv", at: 1)
        try await fixture.application().test(.router) { client in
            let token: HTTPFields = [.authorization: "Bearer \(ConsoleFixture.viewerToken)"]
            try await client.execute(uri: "/api/v1/transfers/T1/parts", method: .get, headers: token) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let tree = try JSONDecoder().decode(PartTree.Tree.self, from: Data(buffer: response.body))
                #expect(tree.parts.map(\.contentType) == ["multipart/mixed", "text/plain", "text/csv", "application/pdf"])
                #expect(tree.parts.map(\.fileName) == [nil, nil, "a.csv", "b.pdf"])
                #expect(tree.parts.map(\.depth) == [0, 1, 1, 1])
                #expect(tree.parts.last?.size == 5, "decoded: %PDF-")
                #expect(tree.problem == nil)
            }
            try await client.execute(uri: "/api/v1/transfers/T2/parts", method: .get, headers: token) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test func onlyTheLocalMachineMayGoWithoutTLSAndLogins() {
        let users = ConsoleAccounts(users: [.init(name: "a", role: .operator, passwordHash: String(repeating: "x", count: 60))])
        #expect(ConsolePolicy.exposureProblem(host: "127.0.0.1", tls: false, accounts: nil) == nil)
        #expect(ConsolePolicy.exposureProblem(host: "::1", tls: false, accounts: nil) == nil)
        #expect(ConsolePolicy.exposureProblem(host: "0.0.0.0", tls: false, accounts: users)?.contains("needs TLS") == true)
        #expect(ConsolePolicy.exposureProblem(host: "0.0.0.0", tls: true, accounts: nil)?.contains("needs users") == true)
        #expect(ConsolePolicy.exposureProblem(host: "10.0.0.5", tls: true, accounts: users) == nil)
        #expect(ConsolePages.localPath("//evil.example/") == nil)
        #expect(ConsolePages.localPath("/transfers?x=1") == "/transfers?x=1")
    }
}

/// Wrong passwords for a name, in virtual time.
@Suite struct LoginThrottleTests {
    @Test func fiveWrongPasswordsStopANameForTheRestOfItsWindow() {
        var throttle = LoginThrottle()
        let start = Date(timeIntervalSince1970: 1_764_000_000)
        for minute in 0..<5 {
            #expect(throttle.wait(for: "Olivia", at: start.addingTimeInterval(Double(minute) * 60)) == nil)
            throttle.failed("olivia", at: start.addingTimeInterval(Double(minute) * 60))
        }
        #expect(throttle.wait(for: "OLIVIA", at: start.addingTimeInterval(300)) == 600, "15 minutes from the first counted failure")
        #expect(throttle.wait(for: "victor", at: start.addingTimeInterval(300)) == nil, "another name is not stopped")
        // The first failure leaves the window: four remain, one more try is allowed.
        #expect(throttle.wait(for: "olivia", at: start.addingTimeInterval(900)) == nil)
        throttle.failed("olivia", at: start.addingTimeInterval(900))
        #expect(throttle.wait(for: "olivia", at: start.addingTimeInterval(901)) != nil)
        throttle.succeeded("olivia")
        #expect(throttle.wait(for: "olivia", at: start.addingTimeInterval(902)) == nil, "a success clears the count")
    }

    @Test func theConsoleRefusesEvenTheRightPasswordAfterTooManyWrongOnes() async throws {
        let fixture = try ConsoleFixture()
        try await fixture.application().test(.router) { client in
            var browser = Browser()
            try await client.execute(uri: "/login", method: .get) { browser.take($0) }
            for _ in 0..<5 {
                let (headers, body) = browser.form(["name": "olivia", "password": "wrong"])
                try await client.execute(uri: "/login", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .unauthorized)
                }
            }
            let (headers, body) = browser.form(["name": "olivia", "password": ConsoleFixture.operatorPassword])
            try await client.execute(uri: "/login", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .tooManyRequests)
                #expect(String(buffer: response.body).contains("Too many wrong passwords"))
            }
            let (viewerHeaders, viewerBody) = browser.form(["name": "victor", "password": ConsoleFixture.viewerPassword])
            try await client.execute(uri: "/login", method: .post, headers: viewerHeaders, body: viewerBody) { response in
                #expect(response.status == .seeOther, "another name logs in")
            }
        }
    }
}
