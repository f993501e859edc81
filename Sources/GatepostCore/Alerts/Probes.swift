import Foundation
import GatepostCatalog
import GatepostMIME
import Logging

/// Probes: a message this gateway sends over a site's SMTP to the mailbox the site polls,
/// recognised when a poll brings it back (its header names it and its Message-ID is one the
/// catalog holds for the site: a partner cannot pass a message off as a probe), recorded as a
/// PROBE transfer and never routed. When one does not come back within its deadline, the path
/// (SMTP, the partner's server, POP3, the classification) is broken somewhere.
public enum Probes {
    public static let header = "X-Gatepost-Probe"

    /// Whether `site` is due a probe at `now`: it has `probe:`, and its last probe was sent
    /// `every` ago or more (or never).
    public static func isDue(_ site: RemoteSite, lastSent: Date?, at now: Date) -> Bool {
        guard let settings = site.probe else { return false }
        guard let lastSent else { return true }
        return now.timeIntervalSince(lastSent) >= settings.every.timeInterval
    }

    /// Whether the probes of a site say its path is broken at `now`: the newest probe whose
    /// deadline has passed did not come back, and no probe sent after it did.
    public static func missing(_ probes: [Probe], deadline: Duration, at now: Date) -> Probe? {
        let overdue = probes.filter { $0.returnedAt == nil && now.timeIntervalSince($0.sentAt) > deadline.timeInterval }
        guard let newestOverdue = overdue.max(by: { $0.sentAt < $1.sentAt }) else { return nil }
        let returnedSince = probes.contains { $0.returnedAt != nil && $0.sentAt > newestOverdue.sentAt }
        return returnedSince ? nil : newestOverdue
    }

    /// Records a probe for `site`, then sends it. `recorded` is called once it is in the
    /// catalog, before it goes: a probe the SMTP server refuses is a probe that does not come
    /// back, which is what the alert is for.
    public static func send(
        _ site: RemoteSite, catalog: any Catalog, at now: Date, logger: Logger, recorded: (Probe) -> Void = { _ in }
    ) async throws {
        guard let settings = site.probe, let smtp = site.smtp, let from = smtp.from else {
            throw OutboundTransfer.Failure.noSMTP(site: site.name)
        }
        let token = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let domain = from.split(separator: "@").last.map(String.init) ?? "gatepost.invalid"
        let messageId = "probe.\(token)@\(domain)"
        let header: MessageComposer.Fields = [
            ("From", from),
            ("To", settings.to),
            ("Subject", "Gatepost probe \(token)"),
            ("Date", OutgoingHeader.date(now)),
            ("Message-ID", "<\(messageId)>"),
            (header, token),
            ("Auto-Submitted", "auto-generated"),
        ]
        let text = "A probe of the Gatepost gateway for site \(site.name): it comes back through the poll of this mailbox.\r\n"
            + "It carries no file and asks for no acknowledgment.\r\n"
        let message = MessageComposer.textMessage(header: header, text: text)
        let probe = Probe(site: site.name, messageId: messageId, sentAt: now)
        try await catalog.recordProbe(probe)
        recorded(probe)
        try await smtp.send(message, from: from, to: [settings.to], logger: logger)
        logger.info("probe sent", metadata: ["site": "\(site.name)", "messageId": "\(messageId)"])
    }
}
