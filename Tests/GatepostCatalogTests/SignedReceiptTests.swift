import Foundation
import Testing
@testable import GatepostCatalog

/// Non-repudiation of receipt, in every store: a transfer sent asking for a signed receipt is
/// acknowledged only by a verified receipt with its MIC; the evidence is kept on the record.
@Suite struct SignedReceiptTests {
    static let mic = "p0Mhx7aBZ4eSAbD/3d1QZN5l0h3mlpWcmrL4YmCyYkM=, sha-256"

    static func outbound() -> TransferRecord {
        var record = F.outbound("T1")
        record.state = .sent
        record.security = MessageSecurity(encrypted: "aes-256-cbc", signedBy: "CN=us", mic: mic, signedReceiptRequested: true)
        return record
    }

    static func receipt(_ id: String, signedBy: String?, mic: String?, failure: String? = nil) -> TransferRecord {
        var report = F.report(id, site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ])
        report.security = MessageSecurity(signedBy: signedBy, signatureFailure: failure, receivedContentMIC: mic)
        return report
    }

    @Test(arguments: CatalogStore.allCases)
    func aVerifiedReceiptWithTheMICAcknowledgesAndKeepsTheEvidence(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(Self.outbound(), message: F.entry("T1"))
        // "sha256" and "sha-256" name the same digest.
        try await catalog.commitReceived(Self.receipt("R1", signedBy: "CN=acme", mic: Self.mic.replacingOccurrences(of: "sha-256", with: "sha256")), uidl: "u1")
        let closed = try #require(try await catalog.transfer(id: "T1"))
        #expect(closed.state == .acknowledged)
        #expect(closed.security?.receipt == MessageSecurity.SignedReceipt(
            signedBy: "CN=acme", mic: Self.mic.replacingOccurrences(of: "sha-256", with: "sha256"), receivedAt: F.epoch, transferId: "R1"
        ))
        #expect(closed.security?.mic == Self.mic, "what was sent stays")
    }

    @Test(arguments: CatalogStore.allCases)
    func anUnsignedReceiptLeavesTheTransferWaiting(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(Self.outbound(), message: F.entry("T1"))
        try await catalog.commitReceived(Self.receipt("R1", signedBy: nil, mic: Self.mic), uidl: "u1")
        let waiting = try #require(try await catalog.transfer(id: "T1"))
        #expect(waiting.state == .sent)
        #expect(waiting.error?.contains("came back unsigned") == true, "\(waiting.error ?? "-")")
        // One whose signature does not verify says why.
        try await catalog.commitReceived(Self.receipt("R2", signedBy: nil, mic: Self.mic, failure: "the signer's certificate has expired"), uidl: "u2")
        let still = try #require(try await catalog.transfer(id: "T1"))
        #expect(still.state == .sent)
        #expect(still.error?.contains("has expired") == true, "\(still.error ?? "-")")
        // Then the signed one closes it.
        try await catalog.commitReceived(Self.receipt("R3", signedBy: "CN=acme", mic: Self.mic), uidl: "u3")
        let closed = try #require(try await catalog.transfer(id: "T1"))
        #expect(closed.state == .acknowledged)
        #expect(closed.error == nil)
    }

    /// Only a verified report moves a transfer that asked for a signed receipt: an unsigned
    /// failure report (anyone can write one) neither fails it nor reopens it once acknowledged.
    @Test(arguments: CatalogStore.allCases)
    func unsignedReportsNeitherFailNorReopenIt(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(Self.outbound(), message: F.entry("T1"))
        var failure = F.report("R1", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processedWithError),
        ])
        try await catalog.commitReceived(failure, uidl: "u1")
        let waiting = try #require(try await catalog.transfer(id: "T1"))
        #expect(waiting.state == .sent)
        #expect(waiting.recipientReports.isEmpty, "an unverified report's lines are not the transfer's")
        #expect(waiting.error?.contains("R1 came back unsigned, saying edi@acme.example: \(F.processedWithError)") == true, "\(waiting.error ?? "-")")
        try await catalog.commitReceived(Self.receipt("R2", signedBy: "CN=acme", mic: Self.mic), uidl: "u2")
        #expect(try await catalog.transfer(id: "T1")?.state == .acknowledged)
        failure.id = "R3"
        failure.messageId = "R3@acme.example"
        try await catalog.commitReceived(failure, uidl: "u3")
        let closed = try #require(try await catalog.transfer(id: "T1"))
        #expect(closed.state == .acknowledged)
        #expect(closed.error == nil)
        #expect(closed.security?.receipt?.transferId == "R2")
        // A verified report of failure does fail it.
        var signedFailure = failure
        signedFailure.id = "R4"
        signedFailure.messageId = "R4@acme.example"
        signedFailure.security = MessageSecurity(signedBy: "CN=acme", receivedContentMIC: Self.mic)
        try await catalog.commitReceived(signedFailure, uidl: "u4")
        #expect(try await catalog.transfer(id: "T1")?.state == .failed)
    }

    @Test(arguments: CatalogStore.allCases)
    func aSignedReceiptWithAnotherMICFailsTheTransfer(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(Self.outbound(), message: F.entry("T1"))
        try await catalog.commitReceived(Self.receipt("R1", signedBy: "CN=acme", mic: "AAAA, sha-256"), uidl: "u1")
        let failed = try #require(try await catalog.transfer(id: "T1"))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("did not receive the content that was sent") == true, "\(failed.error ?? "-")")
        #expect(failed.security?.receipt == nil)
    }

    @Test func micsCompareByDigestAndAlgorithm() {
        #expect(MessageSecurity.sameMIC("abc=, sha1", "abc=,SHA-1"))
        #expect(!MessageSecurity.sameMIC("abc=, sha1", "abc=, sha-256"))
        #expect(!MessageSecurity.sameMIC("abc=, sha1", "abd=, sha1"))
        #expect(!MessageSecurity.sameMIC("abc=", "abc="))
    }
}
