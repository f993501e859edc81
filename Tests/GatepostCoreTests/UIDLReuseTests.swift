import Foundation
import GatepostCatalog
@testable import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// A UIDL the catalog knows is deleted only when the message under it is the one recorded:
/// a server that reuses UIDLs, or lists one twice, loses nothing.
@Suite struct UIDLReuseTests {
    static func message(_ id: String, uidl: String, body: String = "hello") -> ScriptedPOP3Server.Message {
        .init(uidl: uidl, bytes: Array("Message-ID: <\(id)@partner.test>\r\nSubject: \(id)\r\n\r\n\(body)\r\n".utf8))
    }

    @Test func theCheckComparesSizeThenMessageID() {
        let recorded = RetrievedMessage(uidl: "u1", transferID: "T1", deleted: false, messageId: "a@x", listedSize: 100)
        #expect(RecordedMessageCheck.compare(recorded, listedSize: 100) == .needsHeader)
        if case .different = RecordedMessageCheck.compare(recorded, listedSize: 120) {} else {
            Issue.record("another size is another message")
        }
        #expect(RecordedMessageCheck.compare(recorded, listedSize: 100, headerMessageId: .some("a@x")) == .same)
        if case .different = RecordedMessageCheck.compare(recorded, listedSize: 100, headerMessageId: .some("b@x")) {} else {
            Issue.record("another Message-ID is another message")
        }
        if case .different = RecordedMessageCheck.compare(recorded, listedSize: 100, headerMessageId: .some(nil)) {} else {
            Issue.record("no Message-ID where one was recorded is another message")
        }
        // Rows from before these were kept: nothing to compare, the old rule (the same message).
        let old = RetrievedMessage(uidl: "u1", transferID: "T1", deleted: false)
        #expect(RecordedMessageCheck.compare(old, listedSize: 100) == .same)
    }

    @Test func aServerReusingUIDLsGetsItsNewMessagesFetchedNotDeletedUnread() async throws {
        // First poll: committed, but every DELE refused, so the UIDLs stay undeleted.
        var refusing = ScriptedPOP3Server.Behavior()
        refusing.override = { $0.hasPrefix("DELE") ? "-ERR [SYS/TEMP] try later" : nil }
        let first = [Self.message("a", uidl: "u1"), Self.message("b", uidl: "u2")]
        let fixture = try await PollFixture(messages: first, behavior: refusing)
        defer { let server = fixture.server; Task { await server.stop() } }
        await #expect(throws: SitePollError.self) { try await fixture.poll() }
        #expect(try await fixture.records().count == 2)

        // The server now lists other messages under the same UIDLs (u2's is the old one).
        let reused = ScriptedPOP3Server(
            messages: [Self.message("c", uidl: "u1", body: "another"), Self.message("b", uidl: "u2")],
            user: fixture.server.user, password: fixture.server.password
        )
        let port = try await reused.start()
        defer { Task { await reused.stop() } }
        var site = fixture.site
        site.pop3.port = port
        let summary = try await PollJob(site: site, spool: fixture.spool, catalog: fixture.catalog, logger: Logger(label: "test")).run()
        #expect(summary.records.map(\.messageId) == ["c@partner.test"])
        #expect(summary.alreadyRetrieved == 1)
        #expect(summary.deleted == 2)
        let records = try await fixture.records()
        #expect(Set(records.compactMap(\.messageId)) == ["a@partner.test", "b@partner.test", "c@partner.test"])
        // The UIDL now names the new message's transfer.
        let known = try await fixture.catalog.retrievedMessages(site: site.name)
        #expect(known["u1"]?.transferID == summary.records.first?.id)
        #expect(known["u1"]?.deleted == true)
    }

    @Test func aUIDLListedTwiceLosesNeitherMessage() async throws {
        let fixture = try await PollFixture(messages: [Self.message("a", uidl: "same"), Self.message("b", uidl: "same")])
        defer { let server = fixture.server; Task { await server.stop() } }
        let firstPoll = try await fixture.poll()
        #expect(firstPoll.records.map(\.messageId) == ["a@partner.test"])
        // The second copy waited; now alone under the UIDL, it is not the recorded message.
        let secondPoll = try await fixture.poll()
        #expect(secondPoll.records.map(\.messageId) == ["b@partner.test"])
        #expect(fixture.server.messages.isEmpty)
        #expect(try await fixture.records().count == 2)
    }
}
