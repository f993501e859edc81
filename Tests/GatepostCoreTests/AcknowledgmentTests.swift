import Foundation
import GatepostCatalog
import GatepostMIME
import Testing
@testable import GatepostCore

@Suite struct AcknowledgmentPolicyTests {
    static func site(smtp: String = "smtp: {host: smtp.example, from: gateway@ours.example}") throws -> RemoteSite {
        try #require(try SiteLoader(environment: [:]).parse("""
            pop3: {host: pop.example, user: u, password: p}
            \(smtp)
            """, file: "/tmp/partner.yaml"))
    }

    static func header(_ fields: [(String, String)]) -> MessageHeader {
        MessageHeader(fields: fields.map { HeaderField(name: $0.0, value: $0.1) })
    }

    static let record = TransferRecord(id: "T1", type: .xfer, fileName: "a.csv", site: "partner", messageId: "m1@partner.example")

    @Test func sendsWhenReturnPathAndDispositionNotificationToAgree() throws {
        let decision = AcknowledgmentPolicy.decide(
            record: Self.record,
            header: Self.header([("Return-Path", "<EDI@partner.example>"), ("Disposition-Notification-To", "EDI <edi@partner.example>")]),
            site: try Self.site()
        )
        #expect(decision == .send(
            to: [try MailAddress("edi@partner.example")], from: try MailAddress("gateway@ours.example"),
            finalRecipient: try MailAddress("gateway@ours.example")
        ))
        // The Final-Recipient is what the site knows (pop3.address), never a Delivered-To the
        // sender could have written.
        let withAddress = try #require(try SiteLoader(environment: [:]).parse("""
            pop3: {host: pop.example, user: u, password: p, address: orders@ours.example}
            smtp: {host: smtp.example, from: gateway@ours.example}
            """, file: "/tmp/partner.yaml"))
        let forged = Self.header([
            ("Return-Path", "<edi@partner.example>"), ("Disposition-Notification-To", "edi@partner.example"),
            ("Delivered-To", "ceo@victim.example"),
        ])
        #expect(AcknowledgmentPolicy.decide(record: Self.record, header: forged, site: withAddress) == .send(
            to: [try MailAddress("edi@partner.example")], from: try MailAddress("gateway@ours.example"),
            finalRecipient: try MailAddress("orders@ours.example")
        ))
        #expect(AcknowledgmentPolicy.decide(record: Self.record, header: forged, site: try Self.site()) == .send(
            to: [try MailAddress("edi@partner.example")], from: try MailAddress("gateway@ours.example"),
            finalRecipient: try MailAddress("gateway@ours.example")
        ))
    }

    @Test func manyRecipientsAreRefused() throws {
        let trusting = try Self.site(smtp: "smtp: {host: smtp.example, from: gateway@ours.example, acknowledge_any_address: true}")
        let addresses = (1...1500).map { "r\($0)@victims.example" }.joined(separator: ", ")
        let decision = AcknowledgmentPolicy.decide(
            record: Self.record, header: Self.header([("Disposition-Notification-To", addresses)]), site: trusting
        )
        #expect(decision == .refused(reason: "Disposition-Notification-To names 1500 addresses (at most 5 are acknowledged)"))
        let five = (1...5).map { "r\($0)@partner.example" }.joined(separator: ", ")
        guard case .send(let to, _, _, _) = AcknowledgmentPolicy.decide(
            record: Self.record, header: Self.header([("Disposition-Notification-To", five)]), site: trusting
        ) else {
            Issue.record("five addresses are acknowledged")
            return
        }
        #expect(to.count == 5)
    }

    @Test func followsRFC8098WhenNotToSend() throws {
        let site = try Self.site()
        // Not asked.
        #expect(AcknowledgmentPolicy.decide(record: Self.record, header: Self.header([]), site: site) == .notRequested)
        // A report is never acknowledged, nor a duplicate a second time.
        var report = Self.record
        report.type = .eerp
        let asked = Self.header([("Return-Path", "<a@p.example>"), ("Disposition-Notification-To", "a@p.example")])
        #expect(AcknowledgmentPolicy.decide(record: report, header: asked, site: site) == .notRequested)
        var duplicate = Self.record
        duplicate.fileName = TransferRecord.duplicateFileName
        #expect(AcknowledgmentPolicy.decide(record: duplicate, header: asked, site: site) == .notRequested)
        // Return-Path missing or different: not automatically (section 2.1).
        let noReturnPath = Self.header([("Disposition-Notification-To", "a@p.example")])
        guard case .refused = AcknowledgmentPolicy.decide(record: Self.record, header: noReturnPath, site: site) else {
            Issue.record("sent without a Return-Path")
            return
        }
        let elsewhere = Self.header([("Return-Path", "<a@p.example>"), ("Disposition-Notification-To", "victim@elsewhere.example")])
        guard case .refused(let reason) = AcknowledgmentPolicy.decide(record: Self.record, header: elsewhere, site: site) else {
            Issue.record("sent to a third party")
            return
        }
        #expect(reason.contains("differs from Return-Path"))
        // ... unless the site trusts its partner's setup.
        let trusting = try Self.site(smtp: "smtp: {host: smtp.example, from: gateway@ours.example, acknowledge_any_address: true}")
        #expect(AcknowledgmentPolicy.decide(record: Self.record, header: elsewhere, site: trusting) == .send(
            to: [try MailAddress("victim@elsewhere.example")], from: try MailAddress("gateway@ours.example"),
            finalRecipient: try MailAddress("gateway@ours.example")
        ))
        // A report that could only be kept whole (RECOVER) is still a report: no MDN for it.
        var keptWhole = Self.record
        keptWhole.fileName = TransferRecord.recoverFileName
        let reportHeader = Self.header([
            ("Return-Path", "<a@p.example>"), ("Disposition-Notification-To", "a@p.example"),
            ("Content-Type", "multipart/report; report-type=disposition-notification; boundary=x"),
        ])
        #expect(AcknowledgmentPolicy.decide(record: keptWhole, header: reportHeader, site: site) == .notRequested)
        // A required signed receipt the site cannot sign (no smime key): an MDN with an error
        // disposition saying so, not silence.
        let signed = Self.header([
            ("Return-Path", "<a@p.example>"), ("Disposition-Notification-To", "a@p.example"),
            ("Disposition-Notification-Options", "signed-receipt-protocol=required,pkcs7-signature; signed-receipt-micalg=optional,sha-256"),
        ])
        guard case .send(_, _, _, .cannotMeet(let why)) = AcknowledgmentPolicy.decide(record: Self.record, header: signed, site: site) else {
            Issue.record("a required signed receipt that cannot be given is not said so")
            return
        }
        #expect(why.contains("signed-receipt-protocol"))
        // No smtp: settings, or a hostile address: refused, never sent.
        let noSMTP = try Self.site(smtp: "")
        guard case .refused = AcknowledgmentPolicy.decide(record: Self.record, header: asked, site: noSMTP) else {
            Issue.record("sent without smtp settings")
            return
        }
        let injected = Self.header([("Return-Path", "<a@p.example>"), ("Disposition-Notification-To", "a@p.example\r\nBcc: x@y.example")])
        guard case .refused = AcknowledgmentPolicy.decide(record: Self.record, header: injected, site: try Self.site()) else {
            Issue.record("sent to an address with a line break")
            return
        }
    }
}

@Suite struct MDNCompositionTests {
    @Test func theMDNIsAnRFC8098ReportAndNothingReceivedReachesAHeaderRaw() throws {
        let spool = try Spool(root: try makeTemporaryDirectory("mdn"))
        var record = TransferRecord(
            id: "T1", type: .xfer, fileName: "a.csv", site: "partner", messageId: "m1@partner.example", size: 3, sha256: "abc"
        )
        record.subject = "x"
        let header = MessageHeader(fields: [
            HeaderField(name: "Subject", value: "Bestellung\r\nBcc: victim@example.com =?utf-8?q?M=C3=BCller?="),
            HeaderField(name: "Message-ID", value: "<m1@partner.example>"),
            HeaderField(name: "Original-Recipient", value: "rfc822;orders@ours.example"),
        ])
        let entry = try AcknowledgmentWriter.write(
            for: record, header: header, to: [try MailAddress("edi@partner.example")], from: try MailAddress("gateway@ours.example"),
            spool: spool, now: Date(timeIntervalSince1970: 1_795_000_000)
        )
        #expect(entry.kind == .acknowledgment)
        #expect(entry.recipients == ["edi@partner.example"])
        #expect(entry.mailFrom == "", "an MDN goes with the null envelope sender")
        let text = try String(contentsOfFile: entry.path, encoding: .utf8)
        #expect(text.contains("Content-Type: multipart/report; report-type=disposition-notification;"))
        #expect(text.contains("Final-Recipient: rfc822; gateway@ours.example\r\n"))
        #expect(text.contains("Original-Recipient: rfc822; orders@ours.example\r\n"))
        #expect(text.contains("Original-Message-ID: <m1@partner.example>\r\n"))
        #expect(text.contains("Disposition: automatic-action/MDN-sent-automatically; processed\r\n"))
        #expect(text.contains("Auto-Submitted: auto-replied\r\n"))
        #expect(text.contains("Reporting-UA: ours.example; Gatepost\r\n"))
        // The injected line break became a space: no header line starts with Bcc.
        #expect(!text.split(separator: "\r\n").contains { $0.hasPrefix("Bcc:") })
        // Every line ends in CRLF.
        #expect(!text.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        // Durable before the outbox row names it: the file is in out/, owner-only.
        #expect(entry.path.hasPrefix(spool.outboundRoot + "/"))
        let attributes = try FileManager.default.attributesOfItem(atPath: entry.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }

    @Test func everyHeaderLineOfTheMDNFitsIn78Characters() throws {
        let spool = try Spool(root: try makeTemporaryDirectory("mdn"))
        let record = TransferRecord(
            id: "T1", type: .xfer, fileName: "a.csv", site: "partner",
            messageId: "a-rather-long-message-identifier-0123456789-abcdefghij@mail.partner.example", size: 3, sha256: "abc"
        )
        let long = "Bestellung 4711 vom 27.11.2026 über die Lieferung von Ersatzteilen für die Anlage Nord, Halle 3, Tor 7"
        let header = MessageHeader(fields: [
            HeaderField(name: "Subject", value: long),
            HeaderField(name: "From", value: "Einkauf der Partner GmbH und Co. KG Abteilung Zentrale Beschaffung <einkauf@partner.example>"),
            HeaderField(name: "Message-ID", value: "<\(record.messageId ?? "")>"),
        ])
        let recipients = try (1...5).map { try MailAddress("edi-department-\($0)@mail.partner.example") }
        let entry = try AcknowledgmentWriter.write(
            for: record, header: header, to: recipients, from: try MailAddress("gateway@ours.example"), spool: spool
        )
        let text = try String(contentsOfFile: entry.path, encoding: .utf8)
        let lines = text.components(separatedBy: "\r\n")
        // Header lines: the message's and each MIME part's (base64 body lines are 76 anyway).
        let tooLong = lines.filter { $0.utf8.count > 78 }
        #expect(tooLong.isEmpty, "\(tooLong)")
        // Folding keeps every recipient.
        let toField = text.components(separatedBy: "\r\nTo: ").dropFirst().first?.components(separatedBy: "\r\nSubject:").first ?? ""
        #expect(toField.replacingOccurrences(of: "\r\n", with: "").components(separatedBy: ", ").count == 5)
    }

    @Test func aMessageKeptWholeGetsProcessedWithError() throws {
        let spool = try Spool(root: try makeTemporaryDirectory("mdn"))
        let record = TransferRecord(
            id: "T2", type: .xfer, fileName: TransferRecord.recoverFileName, site: "partner", messageId: "m2@p.example",
            error: "kept whole: 2 attached files in one message"
        )
        let entry = try AcknowledgmentWriter.write(
            for: record, header: MessageHeader(), to: [try MailAddress("a@p.example")], from: try MailAddress("g@o.example"), spool: spool
        )
        let text = try String(contentsOfFile: entry.path, encoding: .utf8)
        #expect(text.contains("Disposition: automatic-action/MDN-sent-automatically; processed/error\r\n"))
        #expect(text.contains("Error: kept whole: 2 attached files in one message\r\n"))
    }
}

@Suite struct OutgoingHeaderTests {
    @Test func addressesAreValidatedAndHeadersSanitized() throws {
        #expect(throws: MessageCompositionError.self) { try MailAddress("a b@c.example") }
        #expect(throws: MessageCompositionError.self) { try MailAddress("a@c.example\r\nRCPT TO:<x@y>") }
        #expect(throws: MessageCompositionError.self) { try MailAddress("<a@c.example>") }
        #expect(try MailAddress(" edi+orders@partner.example ").address == "edi+orders@partner.example")
        #expect(MailAddress.list("A <a@x.example>, b@y.example, junk, \"C\" <c@z.example>").map(\.address)
            == ["a@x.example", "b@y.example", "c@z.example"])
        #expect(OutgoingHeader.unstructured("a\r\nBcc: b") == "a Bcc: b")
        #expect(OutgoingHeader.unstructured("Grüße") == "=?utf-8?b?R3LDvMOfZQ==?=")
        // One word longer than a line could hold goes encoded, in pieces: no line over 78.
        let long = OutgoingHeader.unstructured(String(repeating: "x", count: 2000))
        #expect(long.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 78 })
        #expect(OutgoingHeader.fileNameParameter("plain.csv") == "filename=\"plain.csv\"")
        #expect(OutgoingHeader.fileNameParameter("Müller 1.csv") == "filename*=utf-8''M%C3%BCller%201.csv")
    }
}

@Suite struct OrphanedOutgoingTests {
    /// A message written to out/ by a process that died before its commit is swept at start;
    /// one an outbox entry names, or one just written (a send in progress), stays.
    @Test func onlyOldUnreferencedMessagesAreSwept() async throws {
        let spool = try Spool(root: try makeTemporaryDirectory("orphans"))
        func write(_ name: String, ageHours: Double) throws -> String {
            let path = spool.outboundRoot + "/" + name
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-ageHours * 3600)], ofItemAtPath: path)
            return path
        }
        let orphan = try write("orphan.eml", ageHours: 2)
        let owned = try write("owned.eml", ageHours: 2)
        let fresh = try write("fresh.eml", ageHours: 0)
        let removed = try await spool.sweepOrphanedOutgoing { $0 == owned }
        #expect(removed == 1)
        #expect(!FileManager.default.fileExists(atPath: orphan))
        #expect(FileManager.default.fileExists(atPath: owned))
        #expect(FileManager.default.fileExists(atPath: fresh))
    }
}
