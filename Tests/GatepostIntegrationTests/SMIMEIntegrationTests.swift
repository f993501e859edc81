import Crypto
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// S/MIME against the real peers: messages encrypted and signed by `openssl smime` / `openssl
/// cms` (an independent implementation, as a partner's gateway is) are fetched from Dovecot,
/// decrypted, verified and classified; the AS1 loop runs between two gateways over Postfix and
/// Dovecot; what Gatepost signs and encrypts is checked by `openssl`.
@Suite(.serialized) struct SMIMEIntegrationTests {
    /// A MIME entity with a text and one attached file (LF line ends: openssl canonicalizes
    /// text to CRLF when it signs or encrypts it, as mail agents do).
    static func entity(at path: String, fileName: String, payload: [UInt8], text: String = "Order attached.") throws {
        let base64 = Data(payload).base64EncodedString(options: [.lineLength76Characters, .endLineWithLineFeed])
        try """
        Content-Type: multipart/mixed; boundary="entity-boundary"

        --entity-boundary
        Content-Type: text/plain; charset=us-ascii

        \(text)
        --entity-boundary
        Content-Type: application/edifact; name="\(fileName)"
        Content-Disposition: attachment; filename="\(fileName)"
        Content-Transfer-Encoding: base64

        \(base64)
        --entity-boundary--

        """.write(toFile: path, atomically: true, encoding: .utf8)
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    struct Receiving {
        let dovecot: DovecotPeer
        let pki: SMIMETestPKI
        let us: SMIMETestPKI.Party
        let partner: SMIMETestPKI.Party
        let root: String
        let spool: Spool
        let catalog: SQLiteCatalog

        init() async throws {
            dovecot = try await DovecotPeer.start()
            pki = try await SMIMETestPKI()
            us = try await pki.issue("gatepost-receiver")
            // The test CA is what the sites trust: the partner's certificate is for the address
            // its messages come from (RFC 8550's rule for a CA-issued signer).
            partner = try await pki.issue("acme-edi", key: .ec, email: "edi@acme.example")
            root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-smime-\(UUID().uuidString)")
            try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
            spool = try Spool(root: root + "/spool")
            catalog = try SQLiteCatalog(path: spool.catalogPath)
        }

        /// `trusting`: more partner certificates than the test CA.
        func site(_ name: String, user: String, require: String, key: Bool = true, trusting: [String] = []) throws -> RemoteSite {
            let path = root + "/sites/\(name).yaml"
            try """
            \(dovecot.pop3Block(user: user))
            smime:
            \(key ? "  pkcs12: \(us.pkcs12File)\n  password: \(us.pkcs12Password)" : "")
              partner_certificates: [\(([pki.caFile] + trusting).joined(separator: ", "))]
              require: \(require)
            application: orders
            """.write(toFile: path, atomically: true, encoding: .utf8)
            return try #require(try SiteLoader(environment: [:]).loadFile(path))
        }

        /// Runs `openssl` to write a message (with From, To and Subject) and puts it in `user`'s mailbox.
        /// `for`: the certificates to encrypt for (they come last on openssl's command line).
        func deliver(user: String, subject: String, _ arguments: [String], for recipients: [String] = []) async throws {
            let out = root + "/\(UUID().uuidString).eml"
            try await SMIMETestPKI.openssl(arguments + ["-out", out, "-from", "edi@acme.example", "-to", "\(user)@gatepost.example", "-subject", subject] + recipients)
            try dovecot.moveMessage(user: user, from: out)
        }

        func tearDown() {
            dovecot.stop()
            pki.remove()
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    @Test func messagesFromOpenSSLAreDecryptedVerifiedAndClassified() async throws {
        let setup = try await Receiving()
        defer { setup.tearDown() }
        let payload = (0 ..< 40_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }
        let entity = setup.root + "/entity.txt"
        try Self.entity(at: entity, fileName: "ORDERS.edi", payload: payload)
        let tamperedEntity = setup.root + "/tampered.txt"
        let signedEntity = setup.root + "/signed-entity.txt"
        try await SMIMETestPKI.openssl(["smime", "-sign", "-in", entity, "-signer", setup.partner.certificateFile, "-inkey", setup.partner.keyFile, "-out", signedEntity])
        // The signed text changed on the way: the signature no longer matches.
        try (try String(contentsOfFile: signedEntity, encoding: .utf8)).replacingOccurrences(of: "Order attached.", with: "Order attacked.")
            .write(toFile: tamperedEntity, atomically: true, encoding: .utf8)
        let expired = try setup.pki.expired("acme-expired")
        let stranger = try await setup.pki.issue("someone-else")
        // Another holder of a certificate from the CA the site trusts, signing as the partner.
        let impostor = try await setup.pki.issue("impostor", email: "someone@else.example")
        // Signed five times over: more layers than are unwrapped.
        var layered = entity
        for layer in 1 ... 5 {
            let next = setup.root + "/layer-\(layer).txt"
            try await SMIMETestPKI.openssl(["smime", "-sign", "-nodetach", "-in", layered, "-signer", setup.partner.certificateFile, "-inkey", setup.partner.keyFile, "-out", next])
            layered = next
        }
        let plain = setup.root + "/plain.eml"
        try ("From: edi@acme.example\nSubject: plain\nMIME-Version: 1.0\n" + (try String(contentsOfFile: entity, encoding: .utf8)))
            .write(toFile: plain, atomically: true, encoding: .utf8)

        let user = "alice"
        try await setup.deliver(user: user, subject: "rsa-aes256-cbc", ["smime", "-encrypt", "-aes256", "-in", entity], for: [setup.us.certificateFile])
        try await setup.deliver(user: user, subject: "rsa-aes128-gcm", ["cms", "-encrypt", "-aes-128-gcm", "-in", entity], for: [setup.us.certificateFile])
        try await setup.deliver(user: user, subject: "detached", ["smime", "-sign", "-in", entity, "-signer", setup.partner.certificateFile, "-inkey", setup.partner.keyFile])
        try await setup.deliver(user: user, subject: "opaque", ["smime", "-sign", "-nodetach", "-in", entity, "-signer", setup.partner.certificateFile, "-inkey", setup.partner.keyFile])
        try await setup.deliver(user: user, subject: "signed-then-encrypted", ["smime", "-encrypt", "-aes256", "-in", signedEntity], for: [setup.us.certificateFile])
        try await setup.deliver(user: user, subject: "for-someone-else", ["smime", "-encrypt", "-aes256", "-in", entity], for: [stranger.certificateFile])
        try await setup.deliver(user: user, subject: "tampered", ["smime", "-encrypt", "-aes256", "-in", tamperedEntity], for: [setup.us.certificateFile])
        try await setup.deliver(user: user, subject: "expired-signer", ["smime", "-sign", "-in", entity, "-signer", expired.certificateFile, "-inkey", expired.keyFile])
        try await setup.deliver(user: user, subject: "impostor", ["smime", "-sign", "-in", entity, "-signer", impostor.certificateFile, "-inkey", impostor.keyFile])
        try await setup.deliver(user: user, subject: "too-deep", ["smime", "-sign", "-nodetach", "-in", layered, "-signer", setup.partner.certificateFile, "-inkey", setup.partner.keyFile])
        try setup.dovecot.addMessage(user: user, Array("""
        From: pgp@acme.example\r
        Subject: pgp\r
        MIME-Version: 1.0\r
        Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256; boundary="p"\r
        \r
        --p\r
        \(try String(contentsOfFile: entity, encoding: .utf8).replacingOccurrences(of: "\n", with: "\r\n"))\r
        --p\r
        Content-Type: application/pgp-signature\r
        \r
        -----BEGIN PGP SIGNATURE-----\r
        iQEzBAEBCAAdFiEE\r
        -----END PGP SIGNATURE-----\r
        --p--\r

        """.utf8))

        // The expired signer's own certificate is trusted: what fails is its date.
        let site = try setup.site("acme", user: user, require: "none", trusting: [expired.certificateFile])
        let summary = try await PollJob(site: site, spool: setup.spool, catalog: setup.catalog, logger: Logger(label: "it")).run()
        #expect(summary.records.count == 11)
        let records = try await setup.catalog.transfers(TransferFilter())
        func record(_ subject: String) throws -> TransferRecord {
            try #require(records.first { $0.subject == subject }, "no record for \(subject)")
        }
        let payloadSHA = Self.sha256(payload)
        for subject in ["rsa-aes256-cbc", "rsa-aes128-gcm", "detached", "opaque", "signed-then-encrypted", "pgp"] {
            let transfer = try record(subject)
            #expect(transfer.type == .xfer && transfer.fileName == "ORDERS.edi", "\(subject): \(transfer.fileName ?? "-") \(transfer.error ?? "")")
            #expect(transfer.sha256 == payloadSHA, "\(subject)")
            #expect(transfer.messageText?.contains("Order attached.") == true, "\(subject)")
        }
        #expect(try record("rsa-aes256-cbc").security?.encrypted == "enveloped-data")
        #expect(try record("rsa-aes128-gcm").security?.encrypted == "authEnveloped-data")
        #expect(try record("rsa-aes256-cbc").security?.signedBy == nil)
        for subject in ["detached", "opaque", "signed-then-encrypted"] {
            let signed = try record(subject)
            #expect(signed.security?.signedBy == setup.partner.subject, "\(subject)")
            #expect(signed.signature?.hasSuffix(", verified") == true, "\(subject): \(signed.signature ?? "-")")
        }
        #expect(try record("signed-then-encrypted").security?.encrypted == "enveloped-data")
        #expect(try record("pgp").signature == "OpenPGP (application/pgp-signature), not verified")

        // Each failure: RECOVER, the message kept whole as received, the reason said.
        let failures = [
            ("for-someone-else", "encrypted for another recipient"),
            ("tampered", "changed after it was signed"),
            ("expired-signer", "expired"),
            ("impostor", "is for someone@else.example, not for the message's From (edi@acme.example)"),
            ("too-deep", "wrapped more than 4 times"),
        ]
        for (subject, reason) in failures {
            let transfer = try record(subject)
            #expect(transfer.fileName == TransferRecord.recoverFileName, "\(subject)")
            #expect(transfer.error?.contains(reason) == true, "\(subject): \(transfer.error ?? "-")")
            #expect(transfer.state == .received)
            let kept = try #require(transfer.path)
            #expect(try Data(contentsOf: URL(fileURLWithPath: kept)).count == Int(transfer.size), "\(subject): kept whole")
        }
        #expect(try record("tampered").security?.signatureFailure != nil)
        // Nothing is left in tmp/ of what the layers wrote.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: setup.root + "/spool/tmp").filter { !$0.hasPrefix("raw-") }
        #expect(leftovers.isEmpty, "\(leftovers)")

        // A site that requires both: only the signed and encrypted one passes.
        try await setup.deliver(user: "bob", subject: "signed-then-encrypted", ["smime", "-encrypt", "-aes256", "-in", signedEntity], for: [setup.us.certificateFile])
        try await setup.deliver(user: "bob", subject: "only-encrypted", ["smime", "-encrypt", "-aes256", "-in", entity], for: [setup.us.certificateFile])
        try setup.dovecot.addMessage(user: "bob", Array((try String(contentsOfFile: plain, encoding: .utf8)).utf8))
        let strict = try setup.site("strict", user: "bob", require: "both")
        _ = try await PollJob(site: strict, spool: setup.spool, catalog: setup.catalog, logger: Logger(label: "it")).run()
        let strictRecords = try await setup.catalog.transfers(TransferFilter(site: "strict"))
        #expect(strictRecords.count == 3)
        #expect(strictRecords.first { $0.subject == "signed-then-encrypted" }?.fileName == "ORDERS.edi")
        #expect(strictRecords.first { $0.subject == "only-encrypted" }?.error?.contains("has no S/MIME signature") == true)
        #expect(strictRecords.first { $0.subject == "plain" }?.error?.contains("not encrypted") == true)
    }

    /// A key that cannot be opened is the site's problem: the poll fails saying so, and the
    /// message stays on the server for when the key is fixed.
    @Test func aWrongKeyPasswordFailsThePollAndLeavesTheMessage() async throws {
        let setup = try await Receiving()
        defer { setup.tearDown() }
        let entity = setup.root + "/entity.txt"
        try Self.entity(at: entity, fileName: "ORDERS.edi", payload: Array("UNA:+.? '".utf8))
        try await setup.deliver(user: "alice", subject: "encrypted", ["smime", "-encrypt", "-aes256", "-in", entity], for: [setup.us.certificateFile])
        let path = setup.root + "/sites/wrong.yaml"
        try """
        \(setup.dovecot.pop3Block(user: "alice"))
        smime:
          pkcs12: \(setup.us.pkcs12File)
          password: not-the-password
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let site = try #require(try SiteLoader(environment: [:]).loadFile(path))
        await #expect {
            try await PollJob(site: site, spool: setup.spool, catalog: setup.catalog, logger: Logger(label: "it")).run()
        } throws: { error in
            "\(error)".contains("wrong password")
        }
        #expect(setup.dovecot.messageCount(user: "alice") == 1)
        #expect(try await setup.catalog.transfers(TransferFilter()).isEmpty)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: setup.root + "/spool/tmp").filter { !$0.hasPrefix("raw-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}

/// AS1 end to end over Postfix and Dovecot: gateway A sends a file signed and encrypted; B
/// decrypts, verifies and returns a signed receipt with the MIC of what it received; A verifies
/// the receipt and marks the transfer acknowledged with the matching MIC. What each gateway
/// produced is checked by `openssl` on the way.
@Suite(.serialized) struct AS1LoopTests {
    typealias Gateway = AcknowledgmentLoopTests.Gateway

    static func smimeSettings(us: SMIMETestPKI.Party, partner: SMIMETestPKI.Party) -> [String] {
        [
            "smime:",
            "  key: \(us.keyFile)",
            "  certificate: \(us.certificateFile)",
            "  partner_certificates: [\(partner.certificateFile)]",
            "  require: both",
        ]
    }

    @Test func signedAndEncryptedOutSignedReceiptBackAcknowledgedWithTheMIC() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let pki = try await SMIMETestPKI()
        defer { pki.remove() }
        let partyA = try await pki.issue("gateway-a")
        let partyB = try await pki.issue("gateway-b", key: .ec)
        let gatewayA = try Gateway(
            siteName: "bcorp", pop3User: "alice", dovecot: dovecot, smtp: smtp,
            siteSettings: Self.smimeSettings(us: partyA, partner: partyB)
        )
        let gatewayB = try Gateway(
            siteName: "acorp", pop3User: "bob", dovecot: dovecot, smtp: smtp,
            siteSettings: Self.smimeSettings(us: partyB, partner: partyA)
        )
        let payload = (0 ..< 200_000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
        let file = gatewayA.root + "/INVOIC.edi"
        try Data(payload).write(to: URL(fileURLWithPath: file))
        let payloadSHA = SMIMEIntegrationTests.sha256(payload)

        let send = try await gatewayA.gatepost(["send", "bcorp", file, "--to", "bob@\(smtp.info.domain)", "--sign", "--encrypt"])
        #expect(send.status == 0, "\(send.stdout) \(send.stderr)")
        let outbound = try #require(try await gatewayA.records().first)
        let sentMIC = try #require(outbound.security?.mic)
        #expect(sentMIC.hasSuffix(", sha-256"))
        #expect(outbound.security?.signedReceiptRequested == true)
        #expect(outbound.security?.encrypted == "aes-256-cbc")
        #expect(outbound.security?.signedBy == partyA.subject)

        // What A sent, as it sits in bob's mailbox: openssl decrypts it with B's key and
        // verifies A's signature inside (`cms`: `smime` is PKCS#7, without EC recipients).
        try await AcknowledgmentLoopTests.waitForMail(dovecot, user: "bob")
        let bobMaildir = try #require(dovecot.info.maildirs["bob"])
        let sentFile = try #require(try FileManager.default.contentsOfDirectory(atPath: bobMaildir).first.map { bobMaildir + "/" + $0 })
        let decrypted = pki.path("as-sent.decrypted")
        try await SMIMETestPKI.openssl(["cms", "-decrypt", "-in", sentFile, "-recip", partyB.certificateFile, "-inkey", partyB.keyFile, "-out", decrypted])
        try await SMIMETestPKI.openssl(["cms", "-verify", "-in", decrypted, "-CAfile", pki.caFile, "-purpose", "any", "-out", "/dev/null"])

        // B receives: decrypted, verified, classified; a signed receipt goes back.
        let pollB = try await gatewayB.gatepost(["poll", "acorp"])
        #expect(pollB.status == 0, "\(pollB.stdout) \(pollB.stderr)")
        let received = try #require(try await gatewayB.records().first)
        #expect(received.type == .xfer && received.fileName == "INVOIC.edi", "\(received.fileName ?? "-") \(received.error ?? "")")
        #expect(received.sha256 == payloadSHA)
        #expect(received.security?.encrypted == "enveloped-data")
        #expect(received.security?.signedBy == partyA.subject)
        #expect(received.security?.mic == sentMIC, "B's MIC of what it received is A's of what it sent")
        #expect(received.ack == .sent)

        // The receipt in alice's mailbox (after the DSN Postfix sends): openssl verifies B's
        // signature, and it carries the MIC.
        try await AcknowledgmentLoopTests.waitForMail(dovecot, user: "alice", count: 2)
        let aliceMaildir = try #require(dovecot.info.maildirs["alice"])
        let receiptFile = try #require(try FileManager.default.contentsOfDirectory(atPath: aliceMaildir).map { aliceMaildir + "/" + $0 }.first { path in
            (try? String(contentsOfFile: path, encoding: .utf8))?.contains("multipart/signed") == true
        })
        let receiptReport = pki.path("receipt.report")
        try await SMIMETestPKI.openssl(["cms", "-verify", "-in", receiptFile, "-CAfile", pki.caFile, "-purpose", "any", "-out", receiptReport])
        #expect(try String(contentsOfFile: receiptReport, encoding: .utf8).contains("Received-Content-MIC: \(sentMIC)"))

        // A polls: the receipt verifies against B's certificate, the MIC matches: acknowledged.
        let pollA = try await gatewayA.gatepost(["poll", "bcorp"])
        #expect(pollA.status == 0, "\(pollA.stdout) \(pollA.stderr)")
        let recordsA = try await gatewayA.records()
        let receipt = try #require(recordsA.first { $0.type == .eerp && $0.security?.signedBy != nil })
        #expect(receipt.security?.signedBy == partyB.subject)
        #expect(receipt.security?.receivedContentMIC == sentMIC)
        let acknowledged = try #require(recordsA.first { $0.id == outbound.id })
        #expect(acknowledged.state == .acknowledged, "\(acknowledged.state) \(acknowledged.error ?? "")")
        #expect(acknowledged.security?.receipt?.mic == sentMIC)
        #expect(acknowledged.security?.receipt?.signedBy == partyB.subject)
        #expect(acknowledged.security?.receipt?.transferId == receipt.id)
        // The evidence is on the record as the operator sees it.
        let shown = try await gatewayA.gatepost(["catalog", "show", outbound.id, "--format", "json"])
        #expect(shown.stdout.contains(partyB.subject), "\(shown.stdout)")
    }
}

/// Bounded memory through S/MIME: `gatepost poll` fetches a message with a 256 MiB attachment
/// encrypted by `openssl cms` from Dovecot, decrypts and classifies it, and its peak resident
/// memory (the kernel's VmHWM, as the poll's summary reports it; see ``LargeMessageTests`` for
/// why not wait4's) is no more than ``LargeMessageTests/growthCeilingMiB`` above that of a
/// poll of a small encrypted message: what grows with the message is bounded. The absolute
/// figure depends on the binary (a debug build's code alone is ~60 MiB resident);
/// `Benchmarks/smime-memory.sh` measures the release build against the 64 MiB target.
@Suite(.serialized) struct SMIMELargeMessageTests {
    static let attachmentSize = 256 << 20

    @Test func a256MiBEncryptedAttachmentDecryptsInBoundedMemory() async throws {
        let dovecot = try await DovecotPeer.start()
        let pki = try await SMIMETestPKI()
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-smime-large-\(UUID().uuidString)")
        defer {
            dovecot.stop()
            pki.remove()
            try? FileManager.default.removeItem(atPath: root)
        }
        let us = try await pki.issue("gatepost-receiver")
        try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
        try """
        \(dovecot.pop3Block(user: "alice"))
        poll:
          max_message_size: 2GiB
        smime:
          key: \(us.keyFile)
          certificate: \(us.certificateFile)
          require: encrypted
        """.write(toFile: root + "/sites/partner.yaml", atomically: true, encoding: .utf8)

        func pollPeak() async throws -> Double {
            let result = try await ChildProcess.run(
                GatepostProcess.binary, ["poll", "partner", "--sites", root + "/sites", "--spool", root + "/spool"], timeout: .seconds(600)
            )
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
            let peakText = try #require(result.stdout.split(separator: "peak memory ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
            return try #require(Double(peakText.dropLast(3).trimmingCharacters(in: .whitespaces)), "\(result.stdout)")
        }
        /// An attachment of `size` random bytes in an entity encrypted by openssl, written by the
        /// shell and openssl as streams (nothing here holds 256 MiB), put in alice's mailbox;
        /// returns the attachment's SHA-256.
        func deliverEncrypted(size: Int, name: String) async throws -> String {
            let message = root + "/\(name).eml"
            let script = """
            set -euo pipefail
            cd '\(root)'
            head -c \(size) /dev/urandom > \(name)
            sha256sum \(name) | cut -d' ' -f1 > \(name).sha256
            { printf 'Content-Type: application/octet-stream; name="\(name)"\\r\\nContent-Disposition: attachment; filename="\(name)"\\r\\nContent-Transfer-Encoding: base64\\r\\n\\r\\n'
              base64 -w 76 \(name) | sed 's/$/\\r/'; } > \(name).entity
            rm \(name)
            openssl cms -encrypt -binary -stream -aes-256-cbc -in \(name).entity -out '\(message)' -subject \(name) -from edi@acme.example -to alice@gatepost.example '\(us.certificateFile)'
            rm \(name).entity
            """
            let made = try await ChildProcess.run("/bin/bash", ["-c", script], timeout: .seconds(600))
            #expect(made.status == 0, "\(made.stderr)")
            try dovecot.moveMessage(user: "alice", from: message)
            return try String(contentsOfFile: root + "/\(name).sha256", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // What a poll needs whatever the message (the binary, TLS, SQLite, OpenSSL, threads):
        // measured by a small one, so that what is checked is what grows with the message.
        _ = try await deliverEncrypted(size: 1000, name: "small.bin")
        let small = try await pollPeak()
        let expectedSHA = try await deliverEncrypted(size: Self.attachmentSize, name: "big.bin")
        let peak = try await pollPeak()
        print("gatepost poll of a 256 MiB attachment encrypted with S/MIME: peak memory \(peak) MiB, of a small one \(small) MiB")
        #expect(peak - small < LargeMessageTests.growthCeilingMiB, "peak memory \(peak) MiB, \(small) MiB for a small one")

        let catalog = try SQLiteCatalog(path: root + "/spool/catalog.sqlite")
        let record = try #require(try await catalog.transfers(TransferFilter()).first { $0.subject == "big.bin" })
        #expect(record.type == .xfer && record.fileName == "big.bin", "\(record.fileName ?? "-") \(record.error ?? "")")
        #expect(record.size == Int64(Self.attachmentSize))
        #expect(record.sha256 == expectedSHA)
        #expect(record.security?.encrypted == "enveloped-data")
        let path = try #require(record.path)
        #expect(try await offloaded { try LargeMessageTests.sha256(ofFile: path) } == expectedSHA)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/spool/tmp").isEmpty, "the layers' files are gone")
    }
}
