import Crypto
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Testing

/// The whole loop over real servers (issue 7): gatepost A sends a file through Postfix into
/// Dovecot; gatepost B polls it, records an XFER and returns an MDN over SMTP into A's mailbox;
/// the MDN passes an independent RFC 8098 check (Python's `email`); A's poll records the EERP
/// and its outbound transfer becomes acknowledged.
@Suite(.serialized) struct AcknowledgmentLoopTests {
    struct Gateway {
        let root: String
        let siteName: String

        var sites: String { root + "/sites" }
        var spool: String { root + "/spool" }

        /// `smtpSettings`: more lines for the site's `smtp:` block; `siteSettings`, for the site.
        init(
            siteName: String, pop3User: String, dovecot: DovecotPeer, smtp: SMTPPeer, smtpSettings: [String] = [],
            siteSettings: [String] = []
        ) throws {
            root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-ack-\(pop3User)-\(UUID().uuidString.prefix(8))")
            self.siteName = siteName
            try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
            let password = dovecot.info.users[pop3User] ?? ""
            try """
            pop3:
              host: 127.0.0.1
              port: \(dovecot.info.tlsPort)
              security: tls
              user: \(pop3User)
              password: \(password)
              tls: {ca_file: \(dovecot.info.caFile)}
            smtp:
              host: 127.0.0.1
              port: \(smtp.info.tlsPort)
              security: tls
              from: \(pop3User)@\(smtp.info.domain)
              user: \(pop3User)
              password: \(password)
              tls: {ca_file: \(smtp.info.caFile)}
            \(smtpSettings.map { "  " + $0 }.joined(separator: "\n"))
            application: erp
            \(siteSettings.joined(separator: "\n"))
            """.write(toFile: root + "/sites/\(siteName).yaml", atomically: true, encoding: .utf8)
        }

        func gatepost(_ arguments: [String]) async throws -> GatepostProcess {
            try await GatepostProcess.run(arguments + ["--sites", sites, "--spool", spool])
        }

        func records() async throws -> [TransferRecord] {
            try await SQLiteCatalog(path: spool + "/catalog.sqlite").transfers(TransferFilter())
        }
    }

    /// Waits for Postfix to hand a message to Dovecot.
    static func waitForMail(_ dovecot: DovecotPeer, user: String, count: Int = 1) async throws {
        for _ in 0..<200 where dovecot.messageCount(user: user) < count {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(dovecot.messageCount(user: user) == count, "mail for \(user) arrived")
    }

    @Test func aFileGoesOutComesBackAcknowledgedAndClosesTheLoop() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let gatewayA = try Gateway(siteName: "bcorp", pop3User: "alice", dovecot: dovecot, smtp: smtp)
        let gatewayB = try Gateway(siteName: "acorp", pop3User: "bob", dovecot: dovecot, smtp: smtp)

        // A file with a name that needs RFC 2231, and bytes that need base64.
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }
        let file = gatewayA.root + "/Bestellung Müller 42.csv"
        try Data(payload).write(to: URL(fileURLWithPath: file))
        let payloadSHA = SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined()

        // The operator's check first: POP3 and SMTP, each step, nothing sent.
        let test = try await gatewayA.gatepost(["site", "test", "bcorp"])
        #expect(test.status == 0, "\(test.stdout) \(test.stderr)")
        let smtpLine = test.stdout.split(separator: "\n").first { $0.contains("smtp") }.map(String.init) ?? ""
        #expect(smtpLine.contains("PASS") && smtpLine.contains("encrypted, logged in as alice"), "\(test.stdout)")
        #expect(dovecot.messageCount(user: "bob") == 0)

        // A sends.
        let send = try await gatewayA.gatepost(["send", "bcorp", file, "--to", "bob@\(smtp.info.domain)", "--application", "erp"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(send.stdout.contains(" sent"), "\(send.stdout)")
        let outbound = try #require(try await gatewayA.records().first)
        #expect(outbound.direction == .outbound)
        #expect(outbound.state == .sent)
        #expect(outbound.ack == .requested)
        #expect(outbound.sha256 == payloadSHA)
        let outboundMessageID = try #require(outbound.messageId)

        // Postfix reports the delivery into bob's mailbox (a DSN: the server has it, RFC 3461):
        // A's poll records it and the transfer is delivered, still waiting for the partner.
        try await Self.waitForMail(dovecot, user: "bob")
        try await Self.waitForMail(dovecot, user: "alice")
        let dsnPoll = try await gatewayA.gatepost(["poll", "bcorp"])
        #expect(dsnPoll.status == 0, "\(dsnPoll.stderr)")
        let dsn = try #require(try await gatewayA.records().first { $0.type == .eerp })
        #expect(dsn.originalEnvelopeId == outbound.id, "Postfix returned the ENVID")
        #expect(dsn.originalMessageId == outboundMessageID, "from the returned header")
        // Postfix says `relayed` for a hand-over to LMTP without DSN, `delivered` otherwise.
        #expect(dsn.recipientReports.count == 1 && dsn.recipientReports.allSatisfy(\.reportsDelivery), "\(dsn.recipientReports)")
        let delivered = try #require(try await gatewayA.records().first { $0.id == outbound.id })
        #expect(delivered.state == .delivered)
        #expect(delivered.ack == .requested)
        #expect(delivered.recipientReports.map(\.recipient) == ["bob@\(smtp.info.domain)"])

        // B polls: one XFER with the file, and an MDN on its way back.
        let pollB = try await gatewayB.gatepost(["poll", "acorp"])
        #expect(pollB.status == 0, "\(pollB.stderr)")
        #expect(pollB.stdout.contains("acorp: outbox: 1 sent"), "\(pollB.stdout)")
        let received = try #require(try await gatewayB.records().first)
        #expect(received.type == .xfer)
        #expect(received.fileName == "Bestellung Müller 42.csv")
        #expect(received.sha256 == payloadSHA)
        #expect(received.messageId == outboundMessageID)
        #expect(received.ack == .sent)
        let mdnMessageID = try #require(received.ackMessageId)

        // The MDN, as it sits in A's mailbox (the DSN was deleted by A's poll), checked by an
        // independent parser.
        try await Self.waitForMail(dovecot, user: "alice")
        let maildir = try #require(dovecot.info.maildirs["alice"])
        let mdnFile = try #require(try FileManager.default.contentsOfDirectory(atPath: maildir).first.map { maildir + "/" + $0 })
        let check = try await ChildProcess.run(dovecot.projectRoot + "/scripts/peers/check-mdn.py", [
            mdnFile, "--expect-original-message-id", "<\(outboundMessageID)>", "--expect-final-recipient", "bob@\(smtp.info.domain)",
            "--expect-disposition-type", "processed", "--require-automatic",
        ])
        #expect(check.status == 0, "check-mdn: \(check.stderr) \(check.stdout)")

        // A polls: the EERP closes the loop.
        let pollA = try await gatewayA.gatepost(["poll", "bcorp"])
        #expect(pollA.status == 0, "\(pollA.stderr)")
        let recordsA = try await gatewayA.records()
        let eerp = try #require(recordsA.first { $0.type == .eerp && $0.id != dsn.id })
        #expect(eerp.originalMessageId == outboundMessageID)
        #expect(eerp.messageId == mdnMessageID)
        #expect(eerp.ack == .none, "a report is never acknowledged")
        let acknowledged = try #require(recordsA.first { $0.id == outbound.id })
        #expect(acknowledged.state == .acknowledged)
        #expect(acknowledged.ack == .received)
        #expect(acknowledged.ackMessageId == mdnMessageID)
        #expect(acknowledged.recipientReports == [RecipientReport(
            recipient: "bob@\(smtp.info.domain)", disposition: "automatic-action/MDN-sent-automatically; processed"
        )])
        // Nothing went back for the report: B's mailbox stays empty after its poll.
        #expect(dovecot.messageCount(user: "bob") == 0)
    }

    /// A partner's server that took the file and then could not deliver it bounces it (an RFC
    /// 3464 DSN from Postfix): the transfer fails, naming the recipient. A file delivered but
    /// never acknowledged becomes overdue after the site's `ack_timeout`.
    @Test func aBounceFailsTheTransferAndSilenceMakesItOverdue() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let gateway = try Gateway(siteName: "bcorp", pop3User: "alice", dovecot: dovecot, smtp: smtp, smtpSettings: ["ack_timeout: 3s"])
        let file = gateway.root + "/orders.csv"
        try "1;2;3\n".write(toFile: file, atomically: true, encoding: .utf8)

        let bounced = try await gateway.gatepost(["send", "bcorp", file, "--to", "bounce@\(smtp.info.domain)"])
        #expect(bounced.status == 0, "the server took it: \(bounced.stderr)")
        let unanswered = try await gateway.gatepost(["send", "bcorp", file, "--to", "carol@\(smtp.info.domain)"])
        #expect(unanswered.status == 0, "\(unanswered.stderr)")
        let sent = try await gateway.records()
        #expect(sent.map(\.state).last == .sent)
        // Each send's outbox run also marks what is overdue: on a busy machine the second can
        // come after the first's ack_timeout (overdue then; the bounce below fails it either way).
        #expect([.sent, .overdue].contains(sent.first?.state), "\(sent.map(\.state))")
        let sentAt = Date()

        // Three reports come back to alice: bounce@ was `expanded` (an alias), then `failed`
        // (its target refused by LMTP); carol's was delivered. Carol never acknowledges.
        try await Self.waitForMail(dovecot, user: "alice", count: 3)
        try await Self.waitForMail(dovecot, user: "carol")
        // ack_timeout is 3s: let it pass, so that this poll's outbox run finds carol's overdue.
        let passed = sentAt.addingTimeInterval(3.2).timeIntervalSinceNow
        if passed > 0 { try await Task.sleep(for: .milliseconds(Int(passed * 1000))) }
        let poll = try await gateway.gatepost(["poll", "bcorp"])
        #expect(poll.status == 0, "\(poll.stderr)")
        #expect(poll.stdout.contains("1 now overdue"), "\(poll.stdout)")

        let records = try await gateway.records()
        let failed = try #require(records.first { $0.id == sent[0].id })
        #expect(failed.state == .failed)
        #expect(failed.error == "the partner reported: bounce@\(smtp.info.domain): failed 5.1.1", "\(failed.error ?? "")")
        let bounce = try #require(records.first { $0.type == .eerp && $0.originalEnvelopeId == sent[0].id && $0.disposition?.hasPrefix("failed") == true })
        #expect(bounce.originalMessageId == sent[0].messageId)
        #expect(bounce.recipientReports.map(\.recipient) == ["bounce@\(smtp.info.domain)"], "the address sent to (ORCPT), not the alias's target")
        let overdue = try #require(records.first { $0.id == sent[1].id })
        #expect(overdue.state == .overdue)
        #expect(overdue.recipientReports.count == 1 && overdue.recipientReports.allSatisfy(\.reportsDelivery),
                "delivered to carol's mailbox, never acknowledged: \(overdue.recipientReports)")
        let listed = try await gateway.gatepost(["catalog", "list", "--state", "overdue", "--format", "json"])
        #expect(listed.stdout.contains(sent[1].id) && !listed.stdout.contains(sent[0].id), "\(listed.stdout)")
    }

    /// 4xx is "later", 5xx is "no": against the same Postfix, a temporarily failing recipient
    /// leaves the transfer queued for a retry, an unknown one fails it at once.
    @Test func temporaryAndPermanentRefusals() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let gateway = try Gateway(siteName: "bcorp", pop3User: "alice", dovecot: dovecot, smtp: smtp)
        let file = gateway.root + "/a.txt"
        try "hello\n".write(toFile: file, atomically: true, encoding: .utf8)

        let later = try await gateway.gatepost(["send", "bcorp", file, "--to", "tempfail@\(smtp.info.domain)"])
        #expect(later.status == 0, "\(later.stderr)")
        #expect(later.stdout.contains("bcorp: outbox: 0 sent, 1 waiting to retry, 0 failed"), "\(later.stdout)")
        let never = try await gateway.gatepost(["send", "bcorp", file, "--to", "nobody@\(smtp.info.domain)"])
        #expect(never.status == 1)
        #expect(never.stdout.contains("failed"), "\(never.stdout)")

        let records = try await gateway.records()
        #expect(records.map(\.state) == [.queued, .failed])
        #expect(records[1].error?.contains("550") == true, "\(records[1].error ?? "")")
        let catalog = try SQLiteCatalog(path: gateway.spool + "/catalog.sqlite")
        let waiting = try await catalog.outbox(transferId: records[0].id)
        #expect(waiting.map(\.state) == [.pending])
        #expect(waiting.first?.attempts == 1)
        #expect(waiting.first?.lastError?.contains("451") == true, "\(waiting.first?.lastError ?? "")")
        #expect((waiting.first?.nextAttempt ?? .distantPast) > Date())
        #expect(later.stdout.contains("waiting: "), "send says why it waits: \(later.stdout)")

        // One recipient takes it, one says "later": sent, and the other gets an entry of its own.
        let split = try await gateway.gatepost(["send", "bcorp", file, "--to", "bob@\(smtp.info.domain)", "--to", "tempfail@\(smtp.info.domain)"])
        #expect(split.status == 0, "\(split.stderr)")
        let splitRecord = try #require(try await gateway.records().last)
        #expect(splitRecord.state == .queued, "a recipient still waits for its retry: work is owed")
        #expect(splitRecord.error?.contains("waiting to retry tempfail@") == true, "\(splitRecord.error ?? "")")
        let queued = try await gateway.gatepost(["catalog", "list", "--state", "queued", "--format", "json"])
        #expect(queued.stdout.contains(splitRecord.id), "a send waiting on a 451 retry is under --state queued")
        let splitEntries = try await catalog.outbox(transferId: splitRecord.id)
        #expect(splitEntries.map(\.state) == [.sent, .pending])
        #expect(splitEntries.last?.recipients == ["tempfail@\(smtp.info.domain)"])

        // The operator retries the failed one: sent again, refused again, failed again.
        let retry = try await gateway.gatepost(["catalog", "retry", records[1].id])
        #expect(retry.status == 1)
        #expect(retry.stdout.contains("bcorp: outbox: 0 sent, 0 waiting to retry, 1 failed"), "\(retry.stdout) \(retry.stderr)")
        #expect(try await catalog.outbox(transferId: records[1].id).first?.attempts == 2)
    }
}
