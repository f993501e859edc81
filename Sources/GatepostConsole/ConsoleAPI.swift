import Foundation
import GatepostCatalog
import GatepostCore
import GatepostMIME
import Hummingbird

/// The REST API, version 1 (docs/api.md): JSON in and out, the same operations as the command
/// line. Every route says the permission it needs; the access middleware has resolved who asks.
struct ConsoleAPI: Sendable {
    let environment: ConsoleEnvironment

    struct Health: ResponseEncodable {
        var status: String
        var version: String
        var mode: String
    }

    struct SiteList: ResponseEncodable {
        var sites: [SiteStatus]
        var running: [RunningPoll]
    }

    struct SiteDetail: ResponseEncodable {
        var site: SiteStatus
        var actions: [OperatorAction]
    }

    struct TransferPage: ResponseEncodable {
        var transfers: [TransferRecord]
        /// Give it as `after` for the next page; absent on the last.
        var next: String?
    }

    struct TransferDetail: ResponseEncodable {
        var transfer: TransferRecord
        var outbox: [OutboxEntry]
        var actions: [OperatorAction]
        /// Failed attempts that were to be tried again (the count the retry delay grows with).
        var deliveryAttempts: Int
        /// Every delivery attempt, oldest first.
        var deliveries: [DeliveryAttempt]
    }

    typealias Done = OperatorOutcome

    struct Redelivery: Decodable {
        var application: String
    }

    struct TestStep: Codable, ResponseEncodable {
        var name: String
        var passed: Bool
        var detail: String
    }

    struct SiteTest: ResponseEncodable {
        var site: String
        var passed: Bool
        var steps: [TestStep]
    }

    struct Sent: ResponseEncodable {
        var transfer: TransferRecord
        var sent: Int
        var retrying: Int
        var failed: Int
    }

    func register(on router: Hummingbird.Router<ConsoleRequestContext>) {
        let api = router.group("api/v1")
        api.get("health") { _, _ in
            Health(status: "ok", version: GatepostVersion.current, mode: environment.mode)
        }
        // Ready: the catalog answers (a load balancer stops sending to a node whose catalog
        // does not).
        api.get("ready") { _, _ -> Health in
            do {
                _ = try await environment.catalog.siteStates()
            } catch {
                throw ConsoleError(status: .serviceUnavailable, message: "the catalog does not answer: \(error)")
            }
            return Health(status: "ready", version: GatepostVersion.current, mode: environment.mode)
        }

        router.get("metrics") { _, context -> Response in
            _ = try context.require(.read)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: try await ConsoleMetrics.scrape(environment)))
            )
        }

        api.get("status") { _, context -> DaemonStatus in
            _ = try context.require(.read)
            return try await status()
        }

        api.get("sites") { _, context -> SiteList in
            _ = try context.require(.read)
            return SiteList(sites: try await siteStatuses(), running: environment.polls.running())
        }
        api.get("sites/:name") { _, context -> SiteDetail in
            _ = try context.require(.read)
            let name = try context.parameters.require("name")
            guard let status = try await siteStatuses().first(where: { $0.name == name }) else {
                throw ConsoleError.notFound("no site named `\(name)`")
            }
            return SiteDetail(site: status, actions: try await environment.catalog.operatorActions(site: name, transferId: nil, limit: 50))
        }
        for enabled in [true, false] {
            api.post("sites/:name/\(enabled ? "enable" : "disable")") { _, context -> Done in
                let identity = try context.require(.operate)
                let name = try context.parameters.require("name")
                try await setSiteEnabled(name, enabled, actor: identity.actor)
                return Done(site: name, result: enabled ? "enabled" : "disabled")
            }
        }
        api.post("sites/:name/poll") { _, context -> PollNowOutcome in
            let identity = try context.require(.operate)
            return try await pollNow(try context.parameters.require("name"), actor: identity.actor)
        }

        api.post("sites/:name/test") { _, context -> SiteTest in
            let identity = try context.require(.operate)
            return try await testSite(try context.parameters.require("name"), actor: identity.actor)
        }
        api.post("sites/:name/send") { request, context -> Sent in
            let identity = try context.require(.operate)
            let query = request.uri.queryParameters
            let recipients = query.getAll("to").map { String($0) }
            guard let fileName = query["fileName"].map(String.init), !fileName.isEmpty else {
                throw ConsoleError.badRequest("fileName is required: the name the partner gets the file under")
            }
            return try await send(
                request.body, site: try context.parameters.require("name"), fileName: fileName, recipients: recipients,
                application: query["application"].map(String.init), subject: query["subject"].map(String.init), actor: identity.actor
            )
        }

        api.get("transfers") { request, context -> TransferPage in
            _ = try context.require(.read)
            let filter = try TransferQuery.filter(request.uri.queryParameters)
            let transfers = try await environment.catalog.transfers(filter)
            let next = transfers.count == filter.limit ? transfers.last.map { TransferCursor(after: $0).text } : nil
            return TransferPage(transfers: transfers, next: next)
        }
        api.get("transfers/:id") { _, context -> TransferDetail in
            _ = try context.require(.read)
            return try await transferDetail(try context.parameters.require("id"))
        }
        api.get("transfers/:id/file") { request, context -> Response in
            _ = try context.require(.read)
            return try await download(try context.parameters.require("id"), path: request.uri.path, context: context)
        }
        api.get("transfers/:id/parts") { _, context -> PartTree.Tree in
            _ = try context.require(.read)
            return try await parts(try context.parameters.require("id"))
        }
        api.post("transfers/:id/retry") { _, context -> Done in
            let identity = try context.require(.operate)
            let id = try context.parameters.require("id")
            let (result, failed) = try await retryOutcome(id, actor: identity.actor)
            return Done(transfer: id, result: result, failed: failed)
        }
        api.post("transfers/:id/redeliver") { request, context -> Done in
            let identity = try context.require(.operate)
            let id = try context.parameters.require("id")
            let application = try await request.decode(as: Redelivery.self, context: context).application
            return Done(transfer: id, result: try await redeliver(id, to: application, actor: identity.actor))
        }
        api.get("outbox") { request, context -> [OutboxEntry] in
            _ = try context.require(.read)
            return try await outbox(request.uri.queryParameters)
        }
        api.get("alerts") { request, context -> [Alert] in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            let state = query["state"].map(String.init) ?? "open"
            guard ["open", "all"].contains(state) else { throw ConsoleError.badRequest("state must be open or all") }
            let limit = query["limit"].flatMap { Int($0) } ?? 100
            return try await environment.catalog.alerts(openOnly: state == "open", limit: min(max(limit, 1), 1000))
        }
        api.post("alerts/:id/acknowledge") { _, context -> Alert in
            let identity = try context.require(.operate)
            return try await acknowledgeAlert(try context.parameters.require("id"), actor: identity.actor)
        }
        api.post("nodes/:name/forget") { _, context -> Done in
            let identity = try context.require(.operate)
            let name = try context.parameters.require("name")
            try await forgetNode(name, actor: identity.actor)
            return Done(node: name, result: "forgotten")
        }
        api.get("actions") { request, context -> [OperatorAction] in
            _ = try context.require(.read)
            let limit = request.uri.queryParameters["limit"].flatMap { Int($0) } ?? 100
            return try await environment.catalog.operatorActions(site: nil, transferId: nil, limit: min(max(limit, 1), 1000))
        }
    }

    // MARK: Operations shared with the HTML console

    func status() async throws -> DaemonStatus {
        let sites = try await siteStatuses()
        let catalog = environment.catalog
        let overdue = try await catalog.transfers(TransferFilter(state: .overdue, direction: .outbound))
        let pending = try await catalog.dueOutbox(site: nil, at: .distantFuture)
        let directory = await environment.sites()
        let nodes = NodeStatus.all(
            nodes: try await catalog.clusterNodes(), leases: try await catalog.siteLeases(), sites: directory.sites.map(\.name), now: Date()
        )
        return DaemonStatus(
            mode: environment.mode, version: GatepostVersion.current, running: environment.polls.running(),
            sites: sites.count, enabled: sites.filter(\.enabled).count,
            attention: sites.filter(\.needsAttention),
            outboxPending: pending.count, outboxDue: pending.filter { $0.nextAttempt <= Date() }.count,
            overdue: overdue.map { DaemonStatus.Overdue(id: $0.id, site: $0.site, fileName: $0.fileName, sentAt: $0.receivedAt) },
            alerts: try await catalog.alerts(openOnly: true, limit: 100), nodes: nodes
        )
    }

    func siteStatuses() async throws -> [SiteStatus] {
        let directory = await environment.sites()
        let states = try await environment.catalog.siteStates()
        return SiteStatus.ordered(directory.sites.map { SiteStatus(site: $0, state: states[$0.name]) })
    }

    func acknowledgeAlert(_ id: String, actor: String) async throws -> Alert {
        guard let number = Int64(id) else { throw ConsoleError.notFound("no alert with id \(id)") }
        do {
            return try await environment.commands().acknowledgeAlert(number, actor: actor)
        } catch let failure as OperatorCommands.Failure {
            throw ConsoleError(failure)
        }
    }

    /// A node gone for good leaves the list (and its `node-gone` alert resolves); a live one is
    /// refused.
    func forgetNode(_ name: String, actor: String) async throws {
        do {
            try await environment.commands().forgetNode(name, actor: actor)
        } catch let failure as OperatorCommands.Failure {
            throw ConsoleError(failure)
        }
    }

    func setSiteEnabled(_ name: String, _ enabled: Bool, actor: String) async throws {
        do {
            try await environment.commands().setSiteEnabled(name, enabled, actor: actor)
        } catch let failure as OperatorCommands.Failure {
            throw ConsoleError(failure)
        }
    }

    func pollNow(_ name: String, actor: String) async throws -> PollNowOutcome {
        guard let site = await environment.sites().site(named: name) else { throw ConsoleError.notFound("no site named `\(name)`") }
        try await environment.catalog.recordOperatorAction(OperatorAction(actor: actor, action: "site.poll", site: name))
        let outcome = await environment.polls.pollNow(site)
        if let error = outcome.error {
            environment.logger.notice("poll asked for: failed", metadata: ["site": "\(name)", "by": "\(actor)", "error": "\(error)"])
        }
        return outcome
    }

    /// `gatepost site test`: connect, TLS, login, STAT, SMTP; nothing retrieved, deleted or sent.
    func testSite(_ name: String, actor: String) async throws -> SiteTest {
        let directory = await environment.sites()
        guard let site = directory.site(named: name) else { throw ConsoleError.notFound("no site named `\(name)`") }
        try await environment.catalog.recordOperatorAction(OperatorAction(actor: actor, action: "site.test", site: name))
        let steps = await SiteTester.run(site, local: directory.local, logger: environment.logger)
        return SiteTest(site: name, passed: steps.allSatisfy(\.passed), steps: steps.map { TestStep(name: $0.name, passed: $0.passed, detail: $0.detail) })
    }

    /// The largest file the console takes to send.
    static let maxSendSize: Int64 = 2 << 30

    /// `gatepost send`: `body` streams to a file of its own (never whole in memory), is queued
    /// as an outbound transfer asking for an MDN, and sent at once.
    func send(
        _ body: RequestBody, site name: String, fileName: String, recipients: [String], application: String?, subject: String?, actor: String
    ) async throws -> Sent {
        guard let spool = environment.spool else { throw ConsoleError(status: .serviceUnavailable, message: "this console cannot send files") }
        let directory = await environment.sites()
        guard let site = directory.site(named: name) else { throw ConsoleError.notFound("no site named `\(name)`") }
        guard !recipients.isEmpty else { throw ConsoleError.badRequest("give at least one recipient: to=edi@partner.example") }
        let addresses: [MailAddress]
        do {
            addresses = try recipients.map { try MailAddress($0) }
        } catch {
            throw ConsoleError.badRequest("\(error)")
        }
        let folder = spool.root + "/uploads/" + TransferRecord.newID()
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/" + SafeFileName.make(fileName)
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw ConsoleError(status: .internalServerError, message: "cannot write \(path)")
        }
        var size: Int64 = 0
        do {
            defer { try? handle.close() }
            for try await chunk in body {
                size += Int64(chunk.readableBytes)
                guard size <= Self.maxSendSize else { throw ConsoleError(status: .contentTooLarge, message: "the file is larger than \(OperatorText.bytes(Self.maxSendSize))") }
                try handle.write(contentsOf: chunk.readableBytesView)
            }
        }
        let record: TransferRecord
        do {
            record = try await OutboundTransfer.queue(
                file: path, to: addresses, site: site, application: application, subject: subject, spool: spool, catalog: environment.catalog
            )
        } catch let failure as OutboundTransfer.Failure {
            throw ConsoleError(status: .unprocessableContent, message: failure.description)
        }
        try await environment.catalog.recordOperatorAction(OperatorAction(
            actor: actor, action: "outbound.send", site: name, transferId: record.id, detail: "\(record.fileName ?? fileName) to \(recipients.joined(separator: ", "))"
        ))
        let summary = try await OutboxSender(sites: directory.sites, catalog: environment.catalog, logger: environment.logger).sendDue(site: name)
        let now = try await environment.catalog.transfer(id: record.id) ?? record
        return Sent(transfer: now, sent: summary.sent, retrying: summary.retrying, failed: summary.failed)
    }

    /// The outbox, newest first: `state` (pending, sent, failed) and `limit` (1 to 500).
    func outbox(_ query: Parameters) async throws -> [OutboxEntry] {
        var state: OutboxEntry.State?
        if let text = query["state"].map(String.init), !text.isEmpty {
            guard let value = OutboxEntry.State(rawValue: text) else { throw ConsoleError.badRequest("state must be pending, sent or failed") }
            state = value
        }
        let limit = query["limit"].flatMap { Int($0) } ?? 100
        guard (1...500).contains(limit) else { throw ConsoleError.badRequest("limit must be 1 to 500") }
        return try await environment.catalog.outboxEntries(state: state, limit: limit)
    }

    func transferDetail(_ id: String) async throws -> TransferDetail {
        let catalog = environment.catalog
        guard let transfer = try await catalog.transfer(id: id) else { throw ConsoleError.notFound("no transfer with id \(id)") }
        return TransferDetail(
            transfer: transfer, outbox: try await catalog.outbox(transferId: id),
            actions: try await catalog.operatorActions(site: nil, transferId: id, limit: 50),
            deliveryAttempts: try await catalog.deliveryAttempts(id: id),
            deliveries: try await catalog.deliveryHistory(id: id)
        )
    }

    /// The part tree of a message kept whole, read again from its file: why it is a RECOVER.
    func parts(_ id: String) async throws -> PartTree.Tree {
        guard let transfer = try await environment.catalog.transfer(id: id) else { throw ConsoleError.notFound("no transfer with id \(id)") }
        guard let path = transfer.path, transfer.keptWhole else {
            throw ConsoleError.notFound("transfer \(id) does not keep the whole message" + (transfer.purgedAt != nil ? " (purged)" : ""))
        }
        let limits = await environment.sites().site(named: transfer.site)?.poll.limits ?? .default
        do {
            return try await offloaded { try PartTree.read(path: path, limits: limits) }
        } catch {
            throw ConsoleError.notFound("cannot read \(path): \(error)")
        }
    }

    /// The kept file, streamed from the spool, under its FILE_NAME; `path`: the request's, for
    /// a redirect to the node holding the file.
    func download(_ id: String, path requestPath: String, context: ConsoleRequestContext) async throws -> Response {
        guard let transfer = try await environment.catalog.transfer(id: id) else { throw ConsoleError.notFound("no transfer with id \(id)") }
        guard let path = transfer.path else {
            throw ConsoleError.notFound(transfer.purgedAt != nil ? "transfer \(id)'s files were purged" : "transfer \(id) keeps no file")
        }
        if let holder = transfer.node, let here = environment.node, holder != here, await !Spool.isReadable(path) {
            // Another node's spool holds it, out of this node's reach (spools of their own):
            // that node's console serves it. With every node's spool on one shared file
            // system the path reads here as well, and is served like this node's own.
            let node = try await environment.catalog.clusterNodes().first { $0.name == holder }
            guard let console = node?.consoleURL else {
                throw ConsoleError.notFound("transfer \(id)'s file is on node \(holder), which has no console address (gatepost run --http there)")
            }
            let target = (console.hasSuffix("/") ? String(console.dropLast()) : console) + requestPath
            return Response(status: .temporaryRedirect, headers: [.location: target])
        }
        let body = try await FileIO().loadFile(path: path, context: context)
        let name = TransferQuery.downloadName(transfer)
        return Response(status: .ok, headers: [
            .contentType: "application/octet-stream",
            .contentDisposition: TransferQuery.contentDisposition(name),
            .init("X-Content-SHA256")!: transfer.sha256 ?? "",
        ], body: body)
    }

    func retry(_ id: String, actor: String) async throws -> String {
        try await retryOutcome(id, actor: actor).result
    }

    /// What a retry did, in words, and whether any of it failed.
    func retryOutcome(_ id: String, actor: String) async throws -> (result: String, failed: Bool) {
        do {
            let outcomes = try await environment.commands().retry(id, actor: actor)
            let failed = outcomes.contains { outcome in
                switch outcome {
                case .resent(let summary, _): summary.failed > 0
                case .delivered(let delivery): delivery.state == .failed
                }
            }
            return (outcomes.map { outcome in
                switch outcome {
                case .resent(let summary, let record):
                    "sent again: \(summary.sent) sent, \(summary.retrying) waiting to retry, \(summary.failed) failed; now \(record.state.rawValue)"
                case .delivered(let delivery):
                    delivery.state == .delivered ? "delivered to \(delivery.application ?? "-"): \(delivery.deliveredPath ?? "")"
                        : "delivery to \(delivery.application ?? "-") failed: \(delivery.error ?? "")"
                }
            }.joined(separator: "; "), failed)
        } catch let failure as OperatorCommands.Failure {
            throw ConsoleError(failure)
        }
    }

    func redeliver(_ id: String, to application: String, actor: String) async throws -> String {
        do {
            let delivery = try await environment.commands().redeliver(id, to: application, actor: actor)
            return delivery.state == .delivered ? "delivered to \(application): \(delivery.deliveredPath ?? "")"
                : "delivery to \(application) failed: \(delivery.error ?? "")"
        } catch let failure as OperatorCommands.Failure {
            throw ConsoleError(failure)
        }
    }
}

extension ConsoleError {
    init(_ failure: OperatorCommands.Failure) {
        switch failure {
        case .noSuchSite, .noSuchTransfer, .noSuchAlert, .noSuchNode: self = .notFound(failure.description)
        case .refused, .noRoute: self = .conflict(failure.description)
        case .noApplications: self = ConsoleError(status: .unprocessableContent, message: failure.description)
        }
    }
}

/// The query of a transfer list, as the API and the console's search form give it.
enum TransferQuery {
    static let defaultLimit = 50
    static let maxLimit = 500

    static func filter(_ query: Parameters) throws -> TransferFilter {
        func text(_ name: String) -> String? {
            guard let value = query[Substring(name)].map(String.init)?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
            return value
        }
        var filter = TransferFilter(newestFirst: text("order") != "oldest")
        filter.site = text("site")
        if let type = text("type"), !filter.narrow(toListedType: type) {
            throw ConsoleError.badRequest("type must be XFER, MSG, EERP, PROBE, RECOVER or DUPLICATE")
        }
        if let state = text("state") {
            guard let value = TransferRecord.State(rawValue: state) else {
                throw ConsoleError.badRequest("state must be one of \(TransferRecord.State.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.state = value
        }
        if let direction = text("direction") {
            guard let value = TransferRecord.Direction(rawValue: direction) else { throw ConsoleError.badRequest("direction must be in or out") }
            filter.direction = value
        }
        if let fileName = text("fileName"), filter.fileName == nil { filter.fileName = TextPattern(fileName) }
        filter.sender = text("sender").map(TextPattern.init)
        filter.subject = text("subject").map(TextPattern.init)
        // One box searching file name, sender and subject is the console's; the API takes each.
        for (name, date) in [("since", \TransferFilter.since), ("until", \TransferFilter.before)] {
            guard let value = text(name) else { continue }
            guard let parsed = StrictDate.parse(value) else {
                throw ConsoleError.badRequest("\(name): `\(value)` is not a date (ISO 8601: 2026-11-27, 2026-11-27T17:40Z)")
            }
            filter[keyPath: date] = parsed
        }
        if let after = text("after") {
            guard let cursor = TransferCursor(text: after) else { throw ConsoleError.badRequest("after: not a cursor this API gave") }
            filter.after = cursor
        }
        let limit = text("limit").map { Int($0) } ?? defaultLimit
        guard let limit, (1...maxLimit).contains(limit) else { throw ConsoleError.badRequest("limit must be 1 to \(maxLimit)") }
        filter.limit = limit
        return filter
    }

    /// The name a download is saved as: FILE_NAME, `RECOVER-<id>.eml` for a message kept whole.
    static func downloadName(_ transfer: TransferRecord) -> String {
        transfer.wholeMessageFileName ?? transfer.fileName ?? "\(transfer.id).\(transfer.type == .eerp ? "txt" : "bin")"
    }

    /// RFC 6266: an ASCII fallback, and the UTF-8 name (RFC 8187).
    static func contentDisposition(_ name: String) -> String {
        let fallback = String(name.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" ? Character($0) : "_" })
        let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? fallback
        return "attachment; filename=\"\(fallback)\"; filename*=UTF-8''\(encoded)"
    }
}

extension PollNowOutcome: ResponseEncodable {}
extension RunningPoll: ResponseEncodable {}
extension Alert: ResponseEncodable {}
extension PartTree.Tree: ResponseEncodable {}
extension OutboxEntry: ResponseEncodable {}
extension OperatorAction: ResponseEncodable {}

/// `gatepost status` and `GET /api/v1/status`: the daemon, its polls in progress, the queues,
/// and what needs an operator.
public struct DaemonStatus: Codable, Sendable, ResponseEncodable {
    public struct Overdue: Codable, Sendable, Hashable {
        public var id: String
        public var site: String
        public var fileName: String?
        public var sentAt: Date
    }

    /// `run` (the daemon) or `serve`.
    public var mode: String
    public var version: String
    public var running: [RunningPoll]
    public var sites: Int
    public var enabled: Int
    /// Failing, stuck or misconfigured sites.
    public var attention: [SiteStatus]
    public var outboxPending: Int
    public var outboxDue: Int
    /// Outbound transfers whose acknowledgment is overdue.
    public var overdue: [Overdue]
    /// Open alerts, newest first.
    public var alerts: [Alert]
    /// The nodes sharing the catalog, by name (none for a gateway of one node).
    public var nodes: [NodeStatus] = []
}

/// One node sharing the catalog: alive or not, the sites it is assigned among the live nodes,
/// and the ones it is polling now (holding their leases).
public struct NodeStatus: Codable, Sendable, Hashable {
    public var name: String
    public var alive: Bool
    public var startedAt: Date
    public var heartbeatAt: Date
    public var consoleURL: String?
    public var assignedSites: Int
    public var polling: [String]

    static func all(nodes: [ClusterNode], leases: [SiteLease], sites: [String], now: Date) -> [NodeStatus] {
        let live = nodes.filter { $0.isAlive(at: now) }.map(\.name)
        var assigned: [String: Int] = [:]
        for site in sites {
            if let owner = SiteAssignment.owner(of: site, among: live) { assigned[owner, default: 0] += 1 }
        }
        let held = Dictionary(grouping: leases.filter { $0.expiresAt > now }, by: \.node)
        return nodes.map { node in
            NodeStatus(
                name: node.name, alive: node.isAlive(at: now), startedAt: node.startedAt, heartbeatAt: node.heartbeatAt,
                consoleURL: node.consoleURL, assignedSites: assigned[node.name] ?? 0, polling: (held[node.name] ?? []).map(\.site)
            )
        }
    }
}

/// The status view, for the API and for `gatepost status` without a daemon.
public enum ConsoleStatus {
    public static func status(_ environment: ConsoleEnvironment) async throws -> DaemonStatus {
        try await ConsoleAPI(environment: environment).status()
    }
}

/// What an operator's request did (enable, disable, retry, redeliver), in words.
public struct OperatorOutcome: Codable, Sendable, ResponseEncodable {
    public var site: String?
    public var transfer: String?
    public var node: String?
    public var result: String
    /// Something it did failed (a send refused, a delivery that failed).
    public var failed: Bool?

    public init(site: String? = nil, transfer: String? = nil, node: String? = nil, result: String, failed: Bool? = nil) {
        self.site = site
        self.transfer = transfer
        self.node = node
        self.result = result
        self.failed = failed
    }
}
