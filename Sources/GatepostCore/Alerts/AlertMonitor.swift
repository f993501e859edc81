import AsyncHTTPClient
import Foundation
import GatepostCatalog
import GatepostMIME
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The driver of the alerts: every `alerts.interval` it reads a snapshot from the catalog and
/// the sites, asks ``AlertConditions`` what holds, opens and resolves alerts in the catalog,
/// and tells the channels. Everything it decides is in ``AlertConditions`` and
/// ``NotificationBudget``; ``check(at:)`` is one look at a given instant, so tests drive it in
/// their own time.
public final class AlertMonitor: Service, Sendable {
    let catalog: any Catalog
    let sites: @Sendable () async -> SiteDirectory
    let logger: Logger
    private let budgets = Mutex<[String: NotificationBudget]>([:])

    public init(catalog: any Catalog, sites: @escaping @Sendable () async -> SiteDirectory, logger: Logger) {
        self.catalog = catalog
        self.sites = sites
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let settings = await sites().local?.alerts ?? .defaults
            do {
                _ = try await check(at: Date())
            } catch {
                logger.error("alerts: cannot look at the conditions", metadata: ["reason": "\(error)"])
            }
            let interval = settings.interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    /// One look at `now`: opens and resolves alerts and notifies their channels; returns what
    /// changed.
    @discardableResult
    public func check(at now: Date) async throws -> AlertChanges {
        let directory = await sites()
        let settings = directory.local?.alerts ?? .defaults
        var snapshot = try await snapshot(at: now, directory: directory, settings: settings)
        await sendDueProbes(&snapshot)
        let active = AlertConditions.active(in: snapshot, settings: settings)
        let open = try await catalog.alerts(openOnly: true, limit: Int.max)
        let (opening, resolving) = AlertConditions.changes(open: open, active: active)
        guard !opening.isEmpty || !resolving.isEmpty else { return AlertChanges() }
        let changes = try await catalog.updateAlerts(opening: opening, resolving: resolving, at: now)
        await notify(changes, settings: settings, at: now)
        return changes
    }

    /// Sends a probe for each enabled site with `probe:` whose last one is `every` old, and
    /// adds it to the snapshot's probes (newest first).
    func sendDueProbes(_ snapshot: inout AlertSnapshot) async {
        for site in snapshot.sites where site.probe != nil && site.isEnabled(snapshot.states[site.name]) {
            guard Probes.isDue(site, lastSent: snapshot.probes[site.name]?.first?.sentAt, at: snapshot.now) else { continue }
            var sent: Probe?
            do {
                try await Probes.send(site, catalog: catalog, at: snapshot.now, logger: logger) { sent = $0 }
            } catch {
                logger.error("probe not sent", metadata: ["site": "\(site.name)", "reason": "\(error)"])
            }
            // Refused by the SMTP server or not, a recorded probe is one to wait for.
            if let sent { snapshot.probes[site.name, default: []].insert(sent, at: 0) }
        }
    }

    func snapshot(at now: Date, directory: SiteDirectory, settings: AlertSettings) async throws -> AlertSnapshot {
        let states = try await catalog.siteStates()
        var probes: [String: [Probe]] = [:]
        for site in directory.sites where site.probe != nil {
            probes[site.name] = try await catalog.probes(site: site.name, limit: 10)
        }
        let since = now.addingTimeInterval(-settings.lookback.timeInterval)
        var transfers = try await catalog.transfers(TransferFilter(state: .failed, since: since))
        transfers += try await catalog.transfers(TransferFilter(state: .overdue, since: since))
        transfers += try await catalog.transfers(TransferFilter(
            since: since, direction: .inbound, fileName: .exactly(TransferRecord.recoverFileName)
        ))
        var arrivals: [AlertSnapshot.Arrival] = []
        for site in directory.sites {
            for (index, expectation) in site.expectations.enumerated() {
                guard let window = expectation.lastWindow(at: now), AlertConditions.watches(window, state: states[site.name]) else { continue }
                var pattern = TextPattern(expectation.fileName)
                pattern.kind = .glob
                let found = try await catalog.transfers(TransferFilter(
                    site: site.name, since: window.start, limit: 1, direction: .inbound, fileName: pattern
                ))
                arrivals.append(.init(
                    site: site.name, rule: index, expectation: expectation, deadline: window.deadline, arrived: !found.isEmpty
                ))
            }
        }
        return AlertSnapshot(
            now: now, sites: directory.sites, states: states, transfers: transfers,
            pendingOutbox: try await catalog.outboxEntries(state: .pending, limit: 10_000), arrivals: arrivals,
            expiries: Self.expiries(directory.sites, states: states), probes: probes, nodes: try await catalog.clusterNodes()
        )
    }

    /// What each site needs that expires: the server's certificate as the last poll saw it,
    /// the client certificates it presents (read from their files), its secrets' `_expires`.
    static func expiries(_ sites: [RemoteSite], states: [String: SiteState]) -> [AlertSnapshot.Expiry] {
        var expiries: [AlertSnapshot.Expiry] = []
        for site in sites {
            if let expires = states[site.name]?.serverCertificateExpires {
                expiries.append(.init(site: site.name, what: "pop3 server certificate", expires: expires))
            }
            for (field, path) in site.clientCertificateFiles {
                // An unreadable file is the poll's error to report, not an expiry.
                guard let certificate = try? NIOSSLCertificate.fromPEMFile(path).first else { continue }
                expiries.append(.init(site: site.name, what: field, expires: Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter))))
            }
            for (field, expires) in site.secretExpiries {
                expiries.append(.init(site: site.name, what: field, expires: expires))
            }
        }
        return expiries
    }

    func notify(_ changes: AlertChanges, settings: AlertSettings, at now: Date) async {
        let notifications = changes.opened.map { AlertNotification(event: .opened, alert: $0) }
            + changes.resolved.map { AlertNotification(event: .resolved, alert: $0) }
        await withTaskGroup(of: Void.self) { group in
            for notification in notifications {
                for channel in settings.channels(for: notification.alert) {
                    switch channel.destination {
                    case .log:
                        log(notification)
                    case .webhook, .email:
                        let heldBack = budgets.withLock { budgets in
                            var budget = budgets[channel.name] ?? NotificationBudget(perMinute: settings.notificationsPerMinute)
                            defer { budgets[channel.name] = budget }
                            return budget.take(at: now)
                        }
                        guard heldBack.allowed else { continue }
                        var sent = notification
                        sent.suppressed = heldBack.heldBack
                        group.addTask { await self.deliver(sent, to: channel) }
                    }
                }
            }
        }
    }

    private func log(_ notification: AlertNotification) {
        let metadata: Logger.Metadata = [
            "alert": "\(notification.alert.id)", "kind": "\(notification.alert.kind)", "site": "\(notification.alert.site ?? "-")",
        ]
        switch notification.event {
        case .opened: logger.warning("alert opened: \(notification.alert.summary)", metadata: metadata)
        case .resolved: logger.info("alert resolved: \(notification.alert.summary)", metadata: metadata)
        }
    }

    func deliver(_ notification: AlertNotification, to channel: AlertSettings.Channel) async {
        switch channel.destination {
        case .log: log(notification)
        case .webhook(let url, let secret): await post(notification, channel: channel.name, url: url, secret: secret)
        case .email(let recipients, let smtp): await mail(notification, channel: channel.name, to: recipients, smtp: smtp)
        }
    }

    /// Sends the notification as a text message; one attempt (an SMTP server that refuses is
    /// logged; the alert is in the catalog and the console either way).
    func mail(_ notification: AlertNotification, channel: String, to recipients: [String], smtp: RemoteSite.SMTP) async {
        guard let from = smtp.from else { return }
        let alert = notification.alert
        let domain = from.split(separator: "@").last.map(String.init) ?? "gatepost.invalid"
        let header: MessageComposer.Fields = [
            ("From", from),
            ("To", recipients.joined(separator: ", ")),
            ("Subject", OutgoingHeader.unstructured("[gatepost] \(notification.event.rawValue): \(alert.summary)")),
            ("Date", OutgoingHeader.date(Date())),
            ("Message-ID", "<alert-\(alert.id)-\(notification.event.rawValue)-\(UUID().uuidString.lowercased())@\(domain)>"),
            // RFC 3834: no vacation reply or other automatic answer to this.
            ("Auto-Submitted", "auto-generated"),
        ]
        var text = "Alert \(alert.id) \(notification.event.rawValue): \(alert.summary)\n\nkind: \(alert.kind)\nsite: \(alert.site ?? "-")\n"
        text += "opened: \(OperatorText.timestamp(alert.openedAt))\n"
        if let resolved = alert.resolvedAt { text += "resolved: \(OperatorText.timestamp(resolved))\n" }
        if notification.suppressed > 0 { text += "\n\(notification.suppressed) notification(s) before this one were held back (see the console).\n" }
        let message = MessageComposer.textMessage(header: header, text: text.replacingOccurrences(of: "\n", with: "\r\n"))
        do {
            try await smtp.send(message, from: from, to: recipients, logger: logger)
        } catch {
            logger.error("alerts: e-mail not sent", metadata: ["channel": "\(channel)", "reason": "\(error)"])
        }
    }

    /// POSTs the notification, trying again (``WebhookRetry``) while the receiver is down or
    /// busy.
    func post(_ notification: AlertNotification, channel: String, url: URL, secret: Secret?) async {
        var attempt = 0
        while true {
            attempt += 1
            let outcome: String
            do {
                let body = try notification.json()
                var request = HTTPClientRequest(url: url.absoluteString)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.headers.add(name: "User-Agent", value: "gatepost/\(GatepostVersion.current)")
                if let secret {
                    request.headers.add(name: WebhookSignature.header, value: WebhookSignature.sign(body: body, secret: try secret.resolve(), at: Date()))
                }
                request.body = .bytes(ByteBuffer(bytes: body))
                let response = try await HTTPClient.shared.execute(request, deadline: .now() + .seconds(10))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                let status = Int(response.status.code)
                if (200..<300).contains(status) { return }
                outcome = "answered \(status)"
                if !WebhookRetry.isTransient(status: status) {
                    logger.error("alerts: webhook refused the notification", metadata: ["channel": "\(channel)", "status": "\(status)"])
                    return
                }
            } catch {
                outcome = "\(error)"
            }
            guard let delay = WebhookRetry.delay(afterAttempt: attempt) else {
                logger.error("alerts: webhook not reached; giving up", metadata: ["channel": "\(channel)", "attempts": "\(attempt)", "reason": "\(outcome)"])
                return
            }
            logger.warning("alerts: webhook not reached; trying again", metadata: ["channel": "\(channel)", "reason": "\(outcome)"])
            try? await Task.sleep(for: delay)
        }
    }
}
