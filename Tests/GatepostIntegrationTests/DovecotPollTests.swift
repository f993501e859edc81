import Crypto
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// Gatepost against a real Dovecot, started by each test on 127.0.0.1, with mailboxes filled by
/// an independent MIME writer (Python's `email` package).
@Suite(.serialized) struct DovecotPollTests {
    struct Setup {
        let dovecot: DovecotPeer
        let root: String
        let spool: Spool
        let catalog: SQLiteCatalog

        init() async throws {
            dovecot = try await DovecotPeer.start()
            root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-it-\(UUID().uuidString)")
            try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
            spool = try Spool(root: root + "/spool")
            catalog = try SQLiteCatalog(path: spool.catalogPath)
        }

        /// Writes `sites/NAME.yaml` and loads it.
        func site(
            _ name: String = "partner", user: String = "alice", password: String? = nil,
            security: String = "tls", port: Int? = nil, caFile: Bool = true, delete: Bool = true,
            extraPOP3: String = ""
        ) throws -> RemoteSite {
            let port = port ?? (security == "tls" ? dovecot.info.tlsPort : dovecot.info.plainPort)
            let text = """
            name: \(name)
            pop3:
              host: 127.0.0.1
              port: \(port)
              security: \(security)
              user: \(user)
              password: \(password ?? dovecot.info.users[user] ?? "")
            \(caFile ? "  tls: {ca_file: \(dovecot.info.caFile)}" : "")
            \(extraPOP3)
            poll:
              delete_after_retrieve: \(delete)
            application: orders

            """
            let path = root + "/sites/\(name).yaml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return try #require(try SiteLoader(environment: [:]).loadFile(path))
        }

        func poll(_ site: RemoteSite) async throws(SitePollError) -> PollSummary {
            try await PollJob(site: site, spool: spool, catalog: catalog, logger: Logger(label: "it")).run()
        }

        func records() async throws -> [TransferRecord] {
            try await catalog.transfers(TransferFilter())
        }

        func tearDown() {
            dovecot.stop()
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    static func sha256(ofFile path: String) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Each record matches its generated message: type, file name and the saved file's SHA-256.
    static func check(_ records: [TransferRecord], against expected: [DovecotPeer.ExpectedMessage]) throws {
        #expect(records.count == expected.count)
        let byMessageID = Dictionary(records.compactMap { record in record.messageId.map { ($0, record) } }, uniquingKeysWith: { a, _ in a })
        for message in expected {
            let id = message.messageId.trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
            guard let record = byMessageID[id] else {
                Issue.record("no record for \(message.messageId) (\(message.type))")
                continue
            }
            switch message.type {
            case "XFER":
                #expect(record.type == .xfer, "\(id)")
                #expect(record.fileName == message.expectedFileName, "\(id)")
            case "MSG":
                #expect(record.type == .msg, "\(id)")
                #expect(record.fileName == "orders", "\(id)")
            case "EERP":
                #expect(record.type == .eerp, "\(id)")
                if let original = message.originalMessageId {
                    #expect(record.originalMessageId == original.trimmingCharacters(in: CharacterSet(charactersIn: "<>")), "\(id)")
                }
            case "RECOVER":
                #expect(record.type == .xfer, "\(id)")
                #expect(record.fileName == "RECOVER", "\(id)")
            default:
                Issue.record("unknown expected type \(message.type)")
            }
            let path = try #require(record.path, "\(id)")
            let onDisk = try sha256(ofFile: path)
            #expect(onDisk == record.sha256, "\(id): the catalog's sha256 is the file's")
            if let expectedHash = message.sha256 {
                #expect(onDisk == expectedHash, "\(id) \(message.type) \(message.fileName ?? "")")
            }
        }
    }

    @Test func twoHundredMixedMessagesOverImplicitTLS() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        let expected = try await setup.dovecot.fillMailbox(user: "alice", count: 200, seed: 7)
        #expect(Set(expected.map(\.type)) == ["XFER", "MSG", "EERP", "RECOVER"])
        let site = try setup.site()

        let first = try await setup.poll(site)
        #expect(first.records.count == 200)
        #expect(first.deleted == 200)
        try Self.check(try await setup.records(), against: expected)
        #expect(setup.dovecot.messageCount(user: "alice") == 0)

        let second = try await setup.poll(site)
        #expect(second.records.isEmpty)
        #expect(try await setup.records().count == 200)
        #expect(try FileManager.default.contentsOfDirectory(atPath: setup.spool.temporaryRoot).isEmpty)
        #expect(try setup.catalog.integrityCheck() == "ok")
    }

    @Test func leaveOnServerNeverRetrievesAMessageTwice() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        let expected = try await setup.dovecot.fillMailbox(user: "bob", count: 24, seed: 3)
        let site = try setup.site(user: "bob", delete: false)
        let first = try await setup.poll(site)
        #expect(first.records.count == 24)
        #expect(first.deleted == 0)
        // New mail arrives between polls; only it is retrieved.
        let more = try await setup.dovecot.fillMailbox(user: "bob", count: 4, seed: 99)
        let second = try await setup.poll(site)
        #expect(second.records.count == 4)
        #expect(second.alreadyRetrieved == 24)
        let third = try await setup.poll(site)
        #expect(third.records.isEmpty)
        try Self.check(try await setup.records(), against: expected + more)
        #expect(setup.dovecot.messageCount(user: "bob") == 28)
    }

    @Test func stlsUpgradesThePlainListener() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        let expected = try await setup.dovecot.fillMailbox(user: "carol", count: 8, seed: 5)
        let summary = try await setup.poll(try setup.site(user: "carol", security: "starttls"))
        #expect(summary.records.count == 8)
        try Self.check(try await setup.records(), against: expected)
    }

    @Test func aWrongPasswordIsOneLineAndRecordsNothing() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        _ = try await setup.dovecot.fillMailbox(user: "alice", count: 3)
        let site = try setup.site(password: "not-the-password")
        await #expect {
            try await setup.poll(site)
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("partner: authentication failed") && !text.contains("not-the-password") && !text.contains("\n")
        }
        #expect(try await setup.records().isEmpty)
        #expect(setup.dovecot.messageCount(user: "alice") == 3)
    }

    @Test func aCertificateThatDoesNotVerifyIsRefused() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        _ = try await setup.dovecot.fillMailbox(user: "alice", count: 3)
        // No ca_file: the throwaway CA is not among the system roots.
        let site = try setup.site(caFile: false)
        await #expect {
            try await setup.poll(site)
        } throws: { error in
            "\(error)".hasPrefix("partner: TLS failed")
        }
        #expect(try await setup.records().isEmpty)
        #expect(setup.dovecot.messageCount(user: "alice") == 3)
    }

    /// Over STLS the failed handshake closes the connection right when CAPA is due; the cause
    /// is still the certificate, in `poll` and `site test` alike.
    @Test func aCertificateThatDoesNotVerifyOverSTLSIsNamed() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        let site = try setup.site(security: "starttls", caFile: false)
        for _ in 0..<5 {
            await #expect {
                try await setup.poll(site)
            } throws: { error in
                "\(error)".contains("TLS failed: the server certificate could not be verified")
            }
            let steps = await SiteTester.run(site, logger: Logger(label: "test"))
            let failed = steps.first { !$0.passed }
            #expect(failed?.detail.contains("the server certificate could not be verified") == true, "\(steps.map { "\($0.name): \($0.detail)" })")
        }
    }

    @Test func noPasswordInClearTextUnlessTheSiteSaysSo() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        _ = try await setup.dovecot.fillMailbox(user: "alice", count: 2)
        // Mechanisms that put the password on the wire (the default would pick CRAM-MD5).
        await #expect {
            try await setup.poll(try setup.site(security: "none", caFile: false, extraPOP3: "  auth: [plain, login, user]"))
        } throws: { error in
            "\(error)".contains("refusing to send a password over an unencrypted connection")
        }
        #expect(try await setup.records().isEmpty)
        let allowed = try setup.site(security: "none", caFile: false, extraPOP3: "  allow_plaintext_password: true")
        #expect(try await setup.poll(allowed).records.count == 2)
    }

    @Test(arguments: ["user", "plain", "login", "cram-md5", "apop"])
    func everyMechanismAuthenticatesAgainstDovecot(mechanism: String) async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        let expected = try await setup.dovecot.fillMailbox(user: "bob", count: 3, seed: 21)
        let site = try setup.site(user: "bob", extraPOP3: "  auth: [\(mechanism)]")
        #expect(try await setup.poll(site).records.count == 3)
        try Self.check(try await setup.records(), against: expected)
        let wrong = try setup.site("wrong", user: "bob", password: "nope", extraPOP3: "  auth: [\(mechanism)]")
        _ = try await setup.dovecot.fillMailbox(user: "bob", count: 1, seed: 22)
        await #expect {
            try await setup.poll(wrong)
        } throws: { error in
            "\(error)".hasPrefix("wrong: authentication failed")
        }
    }

    @Test func challengeResponseNeedsNoTLSButClearPasswordsDo() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        _ = try await setup.dovecot.fillMailbox(user: "carol", count: 2, seed: 23)
        // Neither CRAM-MD5 nor APOP puts the password on the wire.
        let cram = try setup.site("cram", user: "carol", security: "none", caFile: false, delete: false, extraPOP3: "  auth: [cram-md5]")
        #expect(try await setup.poll(cram).records.count == 2)
        let apop = try setup.site("apop", user: "carol", security: "none", caFile: false, delete: false, extraPOP3: "  auth: [apop]")
        #expect(try await setup.poll(apop).records.count == 2)
        // LOGIN sends it base64-encoded, which is clear text: refused without TLS or opt-in.
        let login = try setup.site("login", user: "carol", security: "none", caFile: false, delete: false, extraPOP3: "  auth: [login]")
        await #expect {
            try await setup.poll(login)
        } throws: { error in
            "\(error)".contains("refusing to send a password over an unencrypted connection")
        }
    }

    @Test func externalAuthenticatesWithTheClientCertificate() async throws {
        let setup = try await Setup()
        defer { setup.tearDown() }
        let expected = try await setup.dovecot.fillMailbox(user: "certuser", count: 3, seed: 51)
        let info = setup.dovecot.info
        // No password at all: the certificate (CN=certuser, signed by the test CA) is the credential.
        let path = setup.root + "/sites/cert.yaml"
        try """
        pop3:
          host: 127.0.0.1
          port: \(info.tlsPort)
          user: certuser
          tls: {ca_file: \(info.caFile), client_certificate: \(info.clientCert), client_key: \(info.clientKey)}
        application: orders
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let site = try #require(try SiteLoader(environment: [:]).loadFile(path))
        #expect(try await setup.poll(site).records.count == 3)
        try Self.check(try await setup.records(), against: expected)

        // The same user without a certificate gets nowhere.
        _ = try await setup.dovecot.fillMailbox(user: "certuser", count: 1, seed: 52)
        let noCertificate = try setup.site("nocert", user: "certuser", password: "anything", extraPOP3: "  auth: [external, plain]")
        await #expect {
            try await setup.poll(noCertificate)
        } throws: { error in
            "\(error)".contains("authentication failed")
        }
    }
}
