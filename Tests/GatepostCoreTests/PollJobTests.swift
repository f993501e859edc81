import Crypto
import Foundation
import GatepostCatalog
import GRDB
import GatepostPOP3
import GatepostTestSupport
import Logging
import Synchronization
import Testing
@testable import GatepostCore

/// A spool, a catalog and a site pointing at a scripted server.
struct PollFixture {
    let spool: Spool
    let catalog: SQLiteCatalog
    let server: ScriptedPOP3Server
    var site: RemoteSite

    /// `readTimeout` is generous by default: the full suite runs Dovecot and crash tests beside
    /// these on two cores. Tests of timeouts pass a short one.
    init(
        messages: [ScriptedPOP3Server.Message] = DemoMailbox.messages, behavior: ScriptedPOP3Server.Behavior = .init(),
        deleteAfterRetrieve: Bool = true, readTimeout: String = "20s"
    ) async throws {
        let root = try makeTemporaryDirectory("poll")
        spool = try Spool(root: root + "/spool")
        catalog = try SQLiteCatalog(path: spool.catalogPath)
        server = ScriptedPOP3Server(messages: messages, behavior: behavior)
        let port = try await server.start()
        let text = """
        pop3:
          host: 127.0.0.1
          port: \(port)
          security: none
          allow_plaintext_password: true
          user: \(server.user)
          password: \(server.password)
          read_timeout: \(readTimeout)
        poll:
          delete_after_retrieve: \(deleteAfterRetrieve)
        application: orders
        """
        site = try #require(try SiteLoader(environment: [:]).parse(text, file: root + "/scripted.yaml"))
    }

    func poll() async throws(SitePollError) -> PollSummary {
        try await PollJob(site: site, spool: spool, catalog: catalog, logger: Logger(label: "test")).run()
    }

    func records() async throws -> [TransferRecord] {
        try await catalog.transfers(TransferFilter())
    }

    func temporaryEntries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: spool.temporaryRoot)
    }
}

func sha256Hex(ofFile path: String) throws -> String {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

@Suite struct PollJobTests {
    @Test func progressIsToldAfterEachCommittedBatch() async throws {
        var fixture = try await PollFixture()
        let server = fixture.server
        defer { Task { await server.stop() } }
        fixture.site.poll.commitBatch = 1
        let seen = Mutex<[Int]>([])
        var job = PollJob(site: fixture.site, spool: fixture.spool, catalog: fixture.catalog, logger: Logger(label: "test"))
        let name = fixture.site.name
        job.progress = { site, messages, bytes in
            #expect(site == name && bytes > 0)
            seen.withLock { $0.append(messages) }
        }
        let summary = try await job.run()
        let counts = seen.withLock { $0 }
        #expect(counts.last == summary.records.count)
        #expect(counts == counts.sorted(), "it only grows")
    }

    /// classify.split_attachments: one message, a transfer per file, all committed with its
    /// UIDL in one transaction and deleted once.
    @Test func aMessageWithSeveralFilesGivesOneTransferEachWhenTheSiteSplits() async throws {
        let twoFiles = ScriptedPOP3Server.Message(uidl: "two-files-1", bytes: Array("""
            From: a@partner.example\r
            Message-ID: <two-files@partner.example>\r
            Content-Type: multipart/mixed; boundary=b\r
            \r
            --b\r
            Content-Type: text/plain\r
            \r
            two files\r
            --b\r
            Content-Type: text/csv; name=a.csv\r
            \r
            1,2\r
            --b\r
            Content-Type: application/pdf; name=b.pdf\r
            \r
            %PDF\r
            --b--\r

            """.utf8))
        var fixture = try await PollFixture(messages: [twoFiles])
        let server = fixture.server
        defer { Task { await server.stop() } }
        fixture.site.classification.splitAttachments = true
        let summary = try await fixture.poll()
        #expect(summary.records.map(\.fileName) == ["a.csv", "b.pdf"])
        #expect(summary.deleted == 1)
        #expect(fixture.server.messages.isEmpty)
        let records = try await fixture.records()
        #expect(Set(records.map(\.fileName)) == ["a.csv", "b.pdf"])
        for record in records {
            #expect(record.messageText == "two files")
            let path = try #require(record.path)
            #expect(try sha256Hex(ofFile: path) == record.sha256)
        }
        #expect(try fixture.temporaryEntries().filter { !$0.hasPrefix("raw-") }.isEmpty)
        // The UIDL names the first transfer: the message is never fetched again.
        #expect(try await fixture.poll().records.isEmpty)
    }

    @Test func pollsEveryClassIntoTheSpoolAndCatalog() async throws {
        let fixture = try await PollFixture()
        let server = fixture.server
        defer { Task { await server.stop() } }
        let summary = try await fixture.poll()
        #expect(summary.records.count == 4)
        #expect(summary.deleted == 4)
        #expect(fixture.server.messages.isEmpty)

        let records = try await fixture.records()
        #expect(records.map(\.type) == [.xfer, .msg, .eerp, .xfer])
        #expect(records.map(\.fileName) == ["orders-2026-11-25.csv", "orders", nil, "RECOVER"])
        let xfer = records[0]
        let path = try #require(xfer.path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == DemoMailbox.orderCSV)
        #expect(try sha256Hex(ofFile: path) == xfer.sha256)
        // Asked for an MDN, but this site has no smtp: settings to send one with.
        #expect(xfer.ack == .failed)
        #expect(xfer.messageId == "xfer-0001@acme.example")
        // The message text lives in the record, not in a file of its own.
        #expect(xfer.messageText?.hasPrefix("Today's purchase orders are attached.") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent).filter { $0.hasPrefix(xfer.id) } == [xfer.id])
        #expect(records[2].originalMessageId == "out-0001@ours.example")
        #expect(records[2].disposition == "automatic-action/MDN-sent-automatically; processed")
        // RECOVER keeps the message exactly as RETR delivered it, dot-unstuffed.
        let recover = try #require(records[3].path)
        #expect(try Data(contentsOf: URL(fileURLWithPath: recover)) == Data(DemoMailbox.messages[3].bytes + [13, 10]))
        #expect(try fixture.temporaryEntries().isEmpty)
    }

    @Test func aSecondPollFindsNothingNew() async throws {
        let fixture = try await PollFixture(deleteAfterRetrieve: false)
        let server = fixture.server
        defer { Task { await server.stop() } }
        _ = try await fixture.poll()
        let second = try await fixture.poll()
        #expect(second.records.isEmpty)
        #expect(second.alreadyRetrieved == 4)
        #expect(fixture.server.messages.count == 4)
        #expect(try await fixture.records().count == 4)
    }

    @Test func aWrongPasswordFailsCleanly() async throws {
        var fixture = try await PollFixture()
        let server = fixture.server
        defer { Task { await server.stop() } }
        fixture.site.pop3.password = Secret("wrong")
        await #expect {
            try await fixture.poll()
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("scripted: authentication failed") && !text.contains("wrong")
        }
        #expect(try await fixture.records().isEmpty)
        #expect(fixture.server.messages.count == 4)
    }

    @Test func noPasswordInClearTextWithoutTheOptIn() async throws {
        var fixture = try await PollFixture()
        let server = fixture.server
        defer { Task { await server.stop() } }
        fixture.site.pop3.allowPlaintextPassword = false
        await #expect {
            try await fixture.poll()
        } throws: { error in
            "\(error)".contains("refusing to send a password over an unencrypted connection")
        }
    }

    @Test func aResetDuringRETRLosesNothing() async throws {
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.resetDuringRetrAfterBytes = 100
        let fixture = try await PollFixture(behavior: behavior)
        let server = fixture.server
        defer { Task { await server.stop() } }
        await #expect(throws: SitePollError.self) { try await fixture.poll() }
        #expect(try await fixture.records().isEmpty)
        #expect(fixture.server.messages.count == 4)
        #expect(try fixture.temporaryEntries().isEmpty)
    }

    /// Batches are fsynced side by side but committed to the catalog in order: when a batch
    /// fails, the one received after it (which may hold a DUPLICATE naming one of its transfers)
    /// is not committed either, and nothing is deleted.
    @Test func aBatchIsNotCommittedWhenTheOneBeforeItFailed() async throws {
        var fixture = try await PollFixture()
        fixture.site.poll.commitBatch = 2
        let server = fixture.server
        defer { Task { await server.stop() } }
        // The first batch (the first two messages) fails in the catalog.
        let database = try DatabaseQueue(path: fixture.spool.catalogPath)
        try await database.write { db in
            try db.execute(sql: """
                CREATE TRIGGER fail_first_batch BEFORE INSERT ON retrieved_message WHEN NEW.uidl = 'demo-msg-1'
                BEGIN SELECT RAISE(ABORT, 'injected failure'); END
                """)
        }
        await #expect(throws: SitePollError.self) { try await fixture.poll() }
        #expect(try await fixture.records().isEmpty, "the second batch waited for the first")
        #expect(fixture.server.messages.count == 4)
        #expect(try fixture.temporaryEntries().isEmpty)
        let inbound = (try? FileManager.default.contentsOfDirectory(atPath: fixture.spool.inboundRoot + "/scripted")) ?? []
        #expect(inbound.isEmpty, "no file of an uncommitted batch is left: \(inbound)")

        try await database.write { db in try db.execute(sql: "DROP TRIGGER fail_first_batch") }
        _ = try await fixture.poll()
        #expect(try await fixture.records().map(\.fileName) == ["orders-2026-11-25.csv", "orders", nil, "RECOVER"])
        #expect(fixture.server.messages.isEmpty)
    }

    @Test func aSilentServerTimesOut() async throws {
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.silentFrom = "RETR"
        // Long enough that the scripted server answers CAPA and UIDL in time on a machine loaded
        // by the rest of the suite (2 s was not, twice); it is silent from RETR on.
        let fixture = try await PollFixture(behavior: behavior, readTimeout: "5s")
        let server = fixture.server
        defer { Task { await server.stop() } }
        await #expect {
            try await fixture.poll()
        } throws: { error in
            "\(error)".contains("did not answer in time during RETR 1")
        }
        #expect(try await fixture.records().isEmpty)
    }

    @Test func committedButUndeletedMessagesAreDeletedNotFetchedAgain() async throws {
        // The first poll's QUIT never arrives (DELE answered with -ERR after the commit). With
        // pipelining, the RETRs already in flight are committed too before the -ERR is read.
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.override = { $0.hasPrefix("DELE") ? "-ERR [SYS/TEMP] try later" : nil }
        let failing = try await PollFixture(behavior: behavior)
        let server = failing.server
        defer { Task { await server.stop() } }
        await #expect(throws: SitePollError.self) { try await failing.poll() }
        let committed = try await failing.records().count
        #expect(committed >= 1)
        #expect(failing.server.messages.count == 4)

        // Same catalog, a server that now accepts DELE: message 1 is deleted, not fetched again.
        let healthy = ScriptedPOP3Server(messages: failing.server.messages, user: failing.server.user, password: failing.server.password)
        let port = try await healthy.start()
        defer { Task { await healthy.stop() } }
        var site = failing.site
        site.pop3.port = port
        let summary = try await PollJob(site: site, spool: failing.spool, catalog: failing.catalog, logger: Logger(label: "test")).run()
        #expect(summary.alreadyRetrieved == committed)
        #expect(summary.records.count == 4 - committed)
        #expect(summary.deleted == 4)
        #expect(healthy.messages.isEmpty)
        #expect(try await failing.records().count == 4)
    }

    @Test func theSameMessageIDTwiceIsADuplicate() async throws {
        let message = DemoMailbox.messages[0]
        let copy = ScriptedPOP3Server.Message(uidl: "copy", bytes: message.bytes)
        let fixture = try await PollFixture(messages: [message, copy])
        let server = fixture.server
        defer { Task { await server.stop() } }
        _ = try await fixture.poll()
        let records = try await fixture.records()
        #expect(records.map(\.fileName) == ["orders-2026-11-25.csv", "DUPLICATE"])
        #expect(records[1].type == .xfer)
    }

    /// A catalog across the network is not asked about each message: the batch's commit leaves
    /// out what was recorded before (here by "another node", under another UIDL), which stays on
    /// the server until retrieved again in the same session and recorded as the DUPLICATE it is.
    /// A second copy in the same mailbox names the recorded transfer too, not the first copy
    /// (which the commit leaves out).
    @Test(arguments: [true, false])
    func aMessageRecordedElsewhereIsLeftOutThenRecordedAsADuplicate(pipelining: Bool) async throws {
        let messages = Array(DemoMailbox.messages.prefix(2)) + [.init(uidl: "copy", bytes: DemoMailbox.messages[0].bytes)]
        var behavior = ScriptedPOP3Server.Behavior()
        if !pipelining { behavior.capabilities = ["USER", "UIDL", "TOP"] }
        let fixture = try await PollFixture(messages: messages, behavior: behavior)
        let server = fixture.server
        defer { Task { await server.stop() } }
        let catalog = InMemoryCatalog(lookupsAreRemote: true)
        var elsewhere = TransferRecord(id: "T-elsewhere", type: .xfer, fileName: "orders.csv", site: fixture.site.name, messageId: "xfer-0001@acme.example")
        elsewhere.node = "node-b"
        try await catalog.commitReceived(elsewhere, uidl: "another-uidl")
        let summary = try await PollJob(site: fixture.site, spool: fixture.spool, catalog: catalog, logger: Logger(label: "test")).run()
        let records = try await catalog.transfers(TransferFilter(site: fixture.site.name))
        #expect(records.count == 4)
        let copies = records.filter { $0.messageId == "xfer-0001@acme.example" && $0.id != "T-elsewhere" }
        #expect(copies.count == 2)
        for copy in copies {
            #expect(copy.fileName == TransferRecord.duplicateFileName)
            #expect(copy.error == "already received as transfer T-elsewhere (same Message-ID)")
        }
        #expect(summary.records.map(\.id).sorted() == records.filter { $0.id != "T-elsewhere" }.map(\.id).sorted())
        #expect(summary.deleted == 3)
        #expect(await server.messages.isEmpty)
        // What the left-out copy staged is gone: only the files of the records remain.
        #expect(try fixture.temporaryEntries().isEmpty)
        let kept = try FileManager.default.contentsOfDirectory(atPath: fixture.spool.inboundRoot + "/" + fixture.site.name)
        #expect(kept.allSatisfy { name in records.contains { name.hasPrefix($0.id) } }, "\(kept)")
    }

    @Test func theSameContentWithoutMessageIDIsADuplicate() async throws {
        let bytes = Array("From: a@partner.example\r\nSubject: no id\r\n\r\njust text\r\n".utf8)
        let other = Array("From: a@partner.example\r\nSubject: no id\r\n\r\nother text\r\n".utf8)
        let fixture = try await PollFixture(messages: [
            .init(uidl: "first", bytes: bytes), .init(uidl: "second", bytes: bytes), .init(uidl: "third", bytes: other),
        ])
        let server = fixture.server
        defer { Task { await server.stop() } }
        _ = try await fixture.poll()
        let records = try await fixture.records()
        #expect(records.map(\.fileName) == ["RECOVER", "DUPLICATE", "RECOVER"])
        #expect(records[1].error == "already received as transfer \(records[0].id) (no Message-ID; same content)")
        #expect(records[0].messageSha256 == records[1].messageSha256)
        #expect(records[2].messageSha256 != records[0].messageSha256)
    }

    @Test func anUnreachableHostIsAOneLineError() async throws {
        var fixture = try await PollFixture()
        await fixture.server.stop()
        // Port 9 (discard): privileged, so no concurrent test's server can take it.
        fixture.site.pop3.port = 9
        fixture.site.pop3.connectTimeout = .seconds(2)
        await #expect {
            try await fixture.poll()
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("scripted: cannot connect to 127.0.0.1:") && !text.contains("\n")
        }
    }
}

@Suite struct SpoolRecoveryTests {
    @Test func aBatchLargerThanTheFsyncWindowIsCommittedWhole() async throws {
        let spool = try Spool(root: try makeTemporaryDirectory("window"))
        let count = Spool.fsyncWindow * 2 + 7
        let batch: [(id: String, files: [TransferAssembler.KeptFile])] = (0..<count).map { index in
            ("T\(index)", [.init(content: .bytes(Array("file \(index)".utf8)), suffix: "", name: "f")])
        }
        // Hundreds of fsyncs: on a thread of their own, not on the concurrency pool.
        try await offloaded { try spool.commitFiles(batch, site: "big") }
        let pending = try FileManager.default.contentsOfDirectory(atPath: spool.inboundRoot + "/big")
        #expect(pending.count == count)
        #expect(pending.allSatisfy { $0.hasPrefix(".T") })
        #expect(try String(contentsOfFile: spool.pendingPath(site: "big", id: "T\(count - 1)"), encoding: .utf8) == "file \(count - 1)")
    }

    @Test func pendingFilesArePublishedIfCommittedAndRemovedIfNot() async throws {
        let root = try makeTemporaryDirectory("recover")
        let spool = try Spool(root: root)
        var batch: [(id: String, files: [TransferAssembler.KeptFile])] = []
        for id in ["T1", "T2"] {
            let prefix = spool.temporaryPrefix(id: id)
            try "main".write(toFile: prefix + ".part-1", atomically: false, encoding: .utf8)
            batch.append((id, [
                .init(content: .file(prefix + ".part-1"), suffix: "", name: "message.txt"),
                .init(content: .bytes(Array("html".utf8)), suffix: ".html", name: "message.html"),
            ]))
        }
        try await offloaded { [batch] in try spool.commitFiles(batch, site: "acme") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.temporaryRoot).isEmpty)
        // A folder of an older spool's layout, committed: published too.
        try FileManager.default.createDirectory(atPath: spool.pendingPath(site: "acme", id: "T0"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: spool.temporaryRoot + "/T3", withIntermediateDirectories: true)
        #expect(spool.sweepTemporary() == 1)
        let result = try await spool.recoverPending { $0 == "T1" || $0 == "T0" }
        #expect(result.published == 3)
        #expect(result.removed == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.inboundRoot + "/acme").sorted() == ["T0", "T1", "T1.html"])
        #expect(try String(contentsOfFile: spool.transferPath(site: "acme", id: "T1"), encoding: .utf8) == "main")
        #expect(try String(contentsOfFile: spool.transferPath(site: "acme", id: "T1") + ".html", encoding: .utf8) == "html")
    }
}
