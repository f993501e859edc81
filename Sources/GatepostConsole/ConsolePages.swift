import Foundation
import GatepostCatalog
import GatepostCore
import Hummingbird
import HummingbirdAuth

/// The console's pages: the dashboard, the transfer catalog, a transfer, login. Every action is
/// a form that POSTs with the session's CSRF token and comes back to the page it was on.
struct ConsolePages: Sendable {
    let api: ConsoleAPI
    let authenticator: ConsoleAuthenticator?
    let sessionLifetime: Duration
    let throttle = SharedLoginThrottle()

    var environment: ConsoleEnvironment { api.environment }

    func register(on router: Hummingbird.Router<ConsoleRequestContext>) {
        router.get("login") { _, context in
            loginPage(context: context, problem: nil)
        }
        router.post("login") { request, context -> Response in
            var request = request
            let form = FormFields(try await request.collectBody(upTo: context.maxUploadSize))
            guard let authenticator else { return HTML.redirect("/") }
            let name = form.value("name") ?? ""
            if let wait = throttle.wait(for: name) {
                environment.logger.notice("console login refused: too many wrong passwords", metadata: ["user": "\(name.prefix(64))"])
                var page = loginPage(context: context, problem: "Too many wrong passwords for this name: try again in \(DurationText.describe(.seconds(Int64(wait.rounded(.up))))).")
                page.status = .tooManyRequests
                return page
            }
            guard let identity = authenticator.login(name: name, password: form.value("password") ?? "") else {
                throttle.failed(name)
                environment.logger.notice("console login refused", metadata: ["user": "\(name.prefix(64))"])
                var page = loginPage(context: context, problem: "Wrong name or password.")
                page.status = .unauthorized
                return page
            }
            throttle.succeeded(name)
            // A new session at login (and a new CSRF token): a session id known before the
            // login is worth nothing after it.
            context.sessions.clearSession()
            context.sessions.createSession(ConsoleSession(identity: identity, csrf: ConsoleAuthenticator.randomHex(bytes: 32)), expiresIn: sessionLifetime)
            environment.logger.info("console login", metadata: ["user": "\(identity.name)"])
            return HTML.redirect(form.value("next").flatMap(Self.localPath) ?? "/")
        }
        router.post("logout") { _, context -> Response in
            context.sessions.clearSession()
            return HTML.redirect("/login")
        }

        router.get("/") { _, context -> Response in
            guard let identity = context.identity else { return HTML.redirect("/login?next=/") }
            return try await dashboard(identity: identity, context: context)
        }
        router.post("sites/:name/:verb") { _, context -> Response in
            guard let identity = context.identity else { return HTML.redirect("/login") }
            guard ConsolePolicy.allows(identity.role, .operate) else { throw ConsoleError.forbidden("only an operator may do this") }
            let name = try context.parameters.require("name")
            switch try context.parameters.require("verb") {
            case "enable": try await api.setSiteEnabled(name, true, actor: identity.actor)
            case "disable": try await api.setSiteEnabled(name, false, actor: identity.actor)
            case "poll": _ = try await api.pollNow(name, actor: identity.actor)
            case "test": return siteTestPage(try await api.testSite(name, actor: identity.actor), identity: identity, context: context)
            default: throw ConsoleError.notFound("no such action")
            }
            return HTML.redirect("/")
        }

        router.post("nodes/:name/forget") { _, context -> Response in
            guard let identity = context.identity else { return HTML.redirect("/login") }
            guard ConsolePolicy.allows(identity.role, .operate) else { throw ConsoleError.forbidden("only an operator may do this") }
            try await api.forgetNode(try context.parameters.require("name"), actor: identity.actor)
            return HTML.redirect("/")
        }

        router.post("alerts/:id/acknowledge") { _, context -> Response in
            guard let identity = context.identity else { return HTML.redirect("/login") }
            guard ConsolePolicy.allows(identity.role, .operate) else { throw ConsoleError.forbidden("only an operator may do this") }
            _ = try await api.acknowledgeAlert(try context.parameters.require("id"), actor: identity.actor)
            return HTML.redirect("/")
        }

        router.get("transfers") { request, context -> Response in
            guard let identity = context.identity else { return HTML.redirect("/login?next=/transfers") }
            return try await transfers(request: request, identity: identity, context: context)
        }
        router.get("outbox") { request, context -> Response in
            guard let identity = context.identity else { return HTML.redirect("/login?next=/outbox") }
            let entries = try await api.outbox(request.uri.queryParameters)
            let states = ["", "pending", "failed", "sent"].map { state in
                "<a href=\"/outbox\(state.isEmpty ? "" : "?state=\(state)")\">\(state.isEmpty ? "all" : state)</a>"
            }.joined(separator: " · ")
            let body = "<p>\(states)</p>" + HTML.table(["Created", "Kind", "Site", "Transfer", "To", "State", "Attempts", "Next try", "Last error"], entries.map { entry in
                [HTML.timestamp(entry.createdAt), entry.kind == .file ? "file" : "MDN", HTML.escape(entry.site),
                 "<a href=\"/transfers/\(HTML.component(entry.transferId))\">\(HTML.escape(entry.transferId))</a>",
                 HTML.escape(entry.recipients.joined(separator: ", ")), entry.state.rawValue, "\(entry.attempts)",
                 entry.state == .pending ? HTML.timestamp(entry.nextAttempt) : "", HTML.escape(entry.lastError ?? "")]
            })
            return HTML.page("Outbox", identity: identity, csrf: context.csrf, body: body)
        }
        router.get("transfers/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let identity = context.identity else { return HTML.redirect("/login") }
            return try await transfer(id, identity: identity, context: context, message: nil)
        }
        router.get("transfers/:id/file") { request, context -> Response in
            guard context.identity != nil else { return HTML.redirect("/login") }
            return try await api.download(try context.parameters.require("id"), path: request.uri.path, context: context)
        }
        router.post("transfers/:id/:verb") { request, context -> Response in
            let id = try context.parameters.require("id")
            guard let identity = context.identity else { return HTML.redirect("/login") }
            guard ConsolePolicy.allows(identity.role, .operate) else { throw ConsoleError.forbidden("only an operator may do this") }
            var request = request
            let form = FormFields(try await request.collectBody(upTo: context.maxUploadSize))
            let message: String
            do {
                switch try context.parameters.require("verb") {
                case "retry": message = try await api.retry(id, actor: identity.actor)
                case "redeliver": message = try await api.redeliver(id, to: form.value("application") ?? "", actor: identity.actor)
                default: throw ConsoleError.notFound("no such action")
                }
            } catch let error as ConsoleError where error.status == .conflict || error.status == .unprocessableContent {
                message = error.message
            }
            return try await transfer(id, identity: identity, context: context, message: message)
        }
    }

    /// Only a path of this console (`/...`, not `//host`) is followed after login.
    static func localPath(_ path: String) -> String? {
        path.hasPrefix("/") && !path.hasPrefix("//") && !path.contains("\\") ? path : nil
    }

    private func loginPage(context: ConsoleRequestContext, problem: String?) -> Response {
        let body = """
        \(problem.map { "<p class=bad>\(HTML.escape($0))</p>" } ?? "")
        <form method=post action=/login>\(HTML.csrfField(context.csrf))
        <p><label>Name <input name=name autocomplete=username required autofocus></label></p>
        <p><label>Password <input name=password type=password autocomplete=current-password required></label></p>
        <p><button>Log in</button></p></form>
        """
        return HTML.page("Log in", identity: nil, csrf: context.csrf, body: body)
    }

    private func dashboard(identity: ConsoleIdentity, context: ConsoleRequestContext) async throws -> Response {
        let statuses = try await api.siteStatuses()
        let running = environment.polls.running()
        let operate = ConsolePolicy.allows(identity.role, .operate)
        let rows: [[String]] = statuses.map { site in
            let state: String
            if let error = site.configurationError {
                state = "<span class=bad>config error since \(HTML.timestamp(site.configurationErrorSince)): \(HTML.escape(error)); running the last good version</span>"
            } else if !site.enabled {
                state = "<span class=muted>disabled</span>"
            } else if let error = site.lastError {
                state = "<span class=bad>failing: \(HTML.escape(error))</span>"
            } else if site.stuck > 0 {
                state = "<span class=bad>\(site.stuck) message(s) stuck</span>"
            } else {
                state = "<span class=ok>ok</span>"
            }
            let secrets = site.unavailableSecrets.isEmpty ? "" : "<br><span class=bad>unavailable: \(HTML.escape(site.unavailableSecrets.joined(separator: "; ")))</span>"
            let actions = operate
                ? HTML.button(site.enabled ? "Disable" : "Enable", action: "/sites/\(HTML.component(site.name))/\(site.enabled ? "disable" : "enable")", csrf: context.csrf, danger: site.enabled)
                    + " " + HTML.button("Poll now", action: "/sites/\(HTML.component(site.name))/poll", csrf: context.csrf)
                    + " " + HTML.button("Test", action: "/sites/\(HTML.component(site.name))/test", csrf: context.csrf)
                : ""
            return [
                "<a href=\"/transfers?site=\(HTML.component(site.name))\">\(HTML.escape(site.name))</a>",
                "<span data-state=\"\(site.enabled ? "enabled" : "disabled")\">\(state)</span>\(secrets)",
                HTML.escape("\(site.host):\(site.port)"), HTML.escape(site.interval), HTML.timestamp(site.lastPoll), HTML.timestamp(site.nextPoll),
                "\(site.messages)", actions,
            ]
        }
        // Open alerts come first: what needs someone now.
        let alerts = try await environment.catalog.alerts(openOnly: true, limit: 100)
        var body = ""
        if !alerts.isEmpty {
            body += "<h2 id=alerts>Open alerts</h2>" + HTML.table(["Since", "Kind", "Site", "What", "Acknowledged"], alerts.map { alert in
                let acknowledged = alert.acknowledgedBy.map { "\(HTML.escape($0)), \(HTML.timestamp(alert.acknowledgedAt))" }
                    ?? (operate ? HTML.button("Acknowledge", action: "/alerts/\(alert.id)/acknowledge", csrf: context.csrf) : "")
                return [HTML.timestamp(alert.openedAt), HTML.escape(alert.kind), HTML.escape(alert.site ?? ""),
                        "<span class=bad>\(HTML.escape(alert.summary))</span>", acknowledged]
            })
            body += "<h2>Sites</h2>"
        }
        body += HTML.table(["Site", "State", "Server", "Every", "Last poll", "Next poll", "Messages", ""], rows)
        body += "<h2>Polls in progress</h2>"
        body += running.isEmpty ? "<p class=muted>None.</p>" : HTML.table(["Site", "Since", "Messages", "Bytes"], running.map {
            [HTML.escape($0.site), HTML.timestamp($0.started), "\($0.messages)", HTML.bytes($0.bytes)]
        })
        let nodes = NodeStatus.all(
            nodes: try await environment.catalog.clusterNodes(), leases: try await environment.catalog.siteLeases(),
            sites: statuses.map(\.name), now: Date()
        )
        if !nodes.isEmpty {
            body += "<h2>Nodes</h2>" + HTML.table(["Node", "State", "Last heartbeat", "Sites", "Polling now", "Console", ""], nodes.map { node in
                // A gone node stays listed (and its alert open) until it beats again or an
                // operator says it is gone for good.
                let forget = operate && !node.alive
                    ? HTML.button("Forget", action: "/nodes/\(HTML.component(node.name))/forget", csrf: context.csrf, danger: true) : ""
                return [HTML.escape(node.name), node.alive ? "<span class=ok>alive</span>" : "<span class=bad>gone</span>",
                        HTML.timestamp(node.heartbeatAt), "\(node.assignedSites)", HTML.escape(node.polling.joined(separator: ", ")),
                        node.consoleURL.map { "<a href=\"\(HTML.escape($0))\">\(HTML.escape($0))</a>" } ?? "", forget]
            })
        }
        body += "<h2>Received today</h2>" + HTML.barChart(try await volumeToday(statuses.map(\.name)))
        return HTML.page("Dashboard", identity: identity, csrf: context.csrf, body: body, refreshSeconds: 10)
    }

    private func siteTestPage(_ test: ConsoleAPI.SiteTest, identity: ConsoleIdentity, context: ConsoleRequestContext) -> Response {
        let rows = test.steps.map { step in
            [HTML.escape(step.name), step.passed ? "<span class=ok>PASS</span>" : "<span class=bad>FAIL</span>", HTML.escape(step.detail)]
        }
        let body = "<p>Nothing was retrieved, deleted or sent.</p>" + HTML.table(["Step", "", "Detail"], rows) + "<p><a href=/>Back to the dashboard</a></p>"
        return HTML.page("Test of \(test.site)", identity: identity, csrf: context.csrf, body: body)
    }

    /// Inbound transfers per site since midnight UTC.
    private func volumeToday(_ sites: [String]) async throws -> [(String, Int)] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let counts = try await environment.catalog.inboundCounts(since: calendar.startOfDay(for: Date()))
        return sites.map { ($0, counts[$0] ?? 0) }.filter { $0.1 > 0 }
    }

    private func transfers(request: Request, identity: ConsoleIdentity, context: ConsoleRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        var filter = try TransferQuery.filter(query)
        if let text = query["q"].map(String.init)?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
            filter.anyText = TextPattern(text)
        }
        let records = try await environment.catalog.transfers(filter)
        func value(_ name: Substring) -> String { HTML.escape(query[name].map(String.init) ?? "") }
        var body = """
        <form class=search method=get action=/transfers>
        <input name=q placeholder="file name, sender or subject" value="\(value("q"))" size=30>
        <input name=site placeholder=site value="\(value("site"))" size=10>
        <select name=type>\(["", "XFER", "MSG", "EERP", "RECOVER", "DUPLICATE"].map { "<option\(query["type"].map(String.init) == $0 ? " selected" : "")>\($0)</option>" }.joined())</select>
        <select name=state>\(([""] + TransferRecord.State.allCases.map(\.rawValue)).map { "<option\(query["state"].map(String.init) == $0 ? " selected" : "")>\($0)</option>" }.joined())</select>
        <select name=direction>\(["", "in", "out"].map { "<option\(query["direction"].map(String.init) == $0 ? " selected" : "")>\($0)</option>" }.joined())</select>
        <input name=since placeholder="since 2026-11-27" value="\(value("since"))" size=14>
        <button>Search</button></form>
        """
        body += HTML.table(["Received", "Type", "File name", "Site", "State", "Sender", "Subject", "Size"], records.map { record in
            [
                HTML.timestamp(record.receivedAt), record.type.rawValue + (record.direction == .outbound ? " out" : ""),
                "<a href=\"/transfers/\(HTML.component(record.id))\">\(HTML.escape(record.fileName ?? record.id))</a>",
                HTML.escape(record.site), HTML.escape(record.state.rawValue), HTML.escape(record.sender ?? ""),
                HTML.escape(record.subject ?? ""), HTML.bytes(record.size),
            ]
        })
        if records.count == filter.limit, let last = records.last {
            var items = query.map { (String($0.key), String($0.value)) }.filter { $0.0 != "after" }
            items.append(("after", TransferCursor(after: last).text))
            body += "<p><a rel=next href=\"/transfers?\(items.map { "\(HTML.component($0.0))=\(HTML.component($0.1))" }.joined(separator: "&"))\">Older</a></p>"
        }
        return HTML.page("Transfers", identity: identity, csrf: context.csrf, body: body)
    }

    private func transfer(_ id: String, identity: ConsoleIdentity, context: ConsoleRequestContext, message: String?) async throws -> Response {
        let detail = try await api.transferDetail(id)
        let record = detail.transfer
        var body = message.map { "<p class=ok id=outcome>\(HTML.escape($0))</p>" } ?? ""
        body += HTML.fields([
            ("id", record.id), ("direction", record.direction.rawValue), ("type", record.type.rawValue),
            ("file name", record.fileName), ("site", record.site), ("application", record.application), ("state", record.state.rawValue),
            ("classification", record.classification), ("signature", record.signature), ("sender", record.sender),
            ("recipients", record.recipients.joined(separator: ", ")), ("subject", record.subject), ("message id", record.messageId),
            ("received", HTML.timestamp(record.receivedAt)), ("size", HTML.bytes(record.size)), ("sha256", record.sha256),
            ("acknowledgment", record.ack.rawValue), ("error", record.error), ("delivered to", record.deliveredPath),
            ("delivery attempts", String(detail.deliveryAttempts)), ("purged", record.purgedAt.map { HTML.timestamp($0) }),
            ("original message id", record.originalMessageId), ("original envelope id", record.originalEnvelopeId),
        ] + (record.security?.lines ?? []).map { ($0.label, $0.value) })
        if record.path != nil {
            body += "<p><a id=download href=\"/transfers/\(HTML.component(record.id))/file\">Download \(HTML.escape(TransferQuery.downloadName(record)))</a></p>"
        }
        if ConsolePolicy.allows(identity.role, .operate) {
            let applications = await environment.sites().local?.applications.map(\.name) ?? []
            body += "<p>" + HTML.button("Retry", action: "/transfers/\(HTML.component(record.id))/retry", csrf: context.csrf)
            if record.direction == .inbound, !applications.isEmpty {
                let options = applications.map { "<option>\(HTML.escape($0))</option>" }.joined()
                body += " " + HTML.button("Redeliver to", action: "/transfers/\(HTML.component(record.id))/redeliver", csrf: context.csrf,
                                          extra: "<select name=application>\(options)</select> ")
            }
            body += "</p>"
        }
        if !detail.deliveries.isEmpty {
            body += "<h2>Deliveries</h2>" + HTML.table(["When", "Application", "Outcome", "Path or error", "Next attempt"], detail.deliveries.map {
                [HTML.timestamp($0.at), HTML.escape($0.application), $0.outcome.rawValue,
                 HTML.escape($0.deliveredPath ?? $0.error ?? ""), $0.retryAt.map { HTML.timestamp($0) } ?? ""]
            })
        }
        if !record.recipientReports.isEmpty {
            body += "<h2>Reports</h2>" + HTML.table(["Recipient", "Action", "Status", "Disposition"], record.recipientReports.map {
                [HTML.escape($0.recipient), HTML.escape($0.action ?? ""), HTML.escape($0.status ?? ""), HTML.escape($0.disposition ?? "")]
            })
        }
        if !detail.outbox.isEmpty {
            body += "<h2>Outgoing messages</h2>" + HTML.table(["Kind", "To", "State", "Attempts", "Last error", "Sent"], detail.outbox.map {
                [$0.kind.rawValue, HTML.escape($0.recipients.joined(separator: ", ")), $0.state.rawValue, "\($0.attempts)",
                 HTML.escape($0.lastError ?? ""), HTML.timestamp($0.sentAt)]
            })
        }
        if record.keptWhole, record.path != nil, let tree = try? await api.parts(record.id) {
            body += "<h2>Parts</h2><p class=muted>Why it was kept whole: \(HTML.escape(record.classification ?? record.error ?? "-"))</p>"
            body += HTML.table(["Part", "Type", "File name", "Disposition", "Size"], tree.parts.map { part in
                [String(repeating: "&nbsp;&nbsp;", count: part.depth) + "\(part.index)", HTML.escape(part.contentType),
                 HTML.escape(part.fileName ?? ""), HTML.escape(part.disposition ?? ""), part.contentType.hasPrefix("multipart/") ? "" : HTML.bytes(part.size)]
            })
            if let problem = tree.problem { body += "<p class=bad>\(HTML.escape(problem))</p>" }
        }
        if let text = record.messageText {
            body += "<h2>Message text</h2><pre>\(HTML.escape(String(text.prefix(64 * 1024))))</pre>"
        }
        body += "<h2>Operator actions</h2>"
        body += detail.actions.isEmpty ? "<p class=muted>None.</p>" : HTML.table(["When", "Who", "What", "Detail"], detail.actions.map {
            [HTML.timestamp($0.at), HTML.escape($0.actor), HTML.escape($0.action), HTML.escape($0.detail ?? "")]
        })
        return HTML.page(record.fileName ?? record.id, identity: identity, csrf: context.csrf, body: body)
    }
}
