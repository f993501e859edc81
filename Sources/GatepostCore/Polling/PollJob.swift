import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostPOP3
import Logging
import NIOCore

/// What one poll of one site did.
public struct PollSummary: Sendable, Hashable {
    public var site: String
    /// Records created by this poll.
    public var records: [TransferRecord] = []
    /// Messages on the server that were already in the catalog.
    public var alreadyRetrieved = 0
    /// Messages left on the server because LIST said they exceed max_message_size.
    public var skippedTooLarge = 0
    /// Messages the server deleted at QUIT.
    public var deleted = 0
    public var bytes: Int64 = 0
    public var duration: Duration = .zero

    public init(site: String) {
        self.site = site
    }
}

/// A poll that failed, with the site and the cause in one line.
public struct SitePollError: Error, Sendable, CustomStringConvertible {
    public var site: String
    public var cause: String
    public var isTransient: Bool
    /// What was achieved before the failure: records committed stay committed.
    public var partial: PollSummary

    public var description: String { "\(site): \(cause)" }
}

/// Polls one site once: connect, authenticate, list, retrieve each new message into the spool
/// and the catalog, delete what the site wants deleted, quit.
///
/// The order is the guarantee (ARCHITECTURE.md, "Data flow of one poll"): a message's files are
/// fsynced and its record and UIDL are committed in one transaction before its DELE is sent, and
/// UIDLs are marked deleted only after QUIT succeeded. A crash or error anywhere leaves each
/// message either recorded once or not at all.
public struct PollJob: Sendable {
    public var site: RemoteSite
    public var spool: Spool
    public var catalog: any Catalog
    public var limits: MIMELimits
    public var logger: Logger

    public init(site: RemoteSite, spool: Spool, catalog: any Catalog, limits: MIMELimits = .default, logger: Logger) {
        self.site = site
        self.spool = spool
        self.catalog = catalog
        self.limits = limits
        var logger = logger
        logger[metadataKey: "site"] = "\(site.name)"
        self.logger = logger
    }

    public func run() async throws(SitePollError) -> PollSummary {
        let start = ContinuousClock.now
        var summary = PollSummary(site: site.name)
        do {
            let configuration = try site.pop3Configuration()
            try await POP3Client.withSession(configuration, logger: logger) { session in
                try await poll(session, summary: &summary)
            }
        } catch {
            summary.duration = ContinuousClock.now - start
            let transient = (error as? POP3Error)?.isTransient ?? false
            // Not logged here: the caller reports the error (once) with the site's name.
            throw SitePollError(site: site.name, cause: "\(error)", isTransient: transient, partial: summary)
        }
        summary.duration = ContinuousClock.now - start
        logger.info("poll finished", metadata: [
            "retrieved": "\(summary.records.count)", "deleted": "\(summary.deleted)", "bytes": "\(summary.bytes)",
        ])
        return summary
    }

    private func poll(_ session: POP3Session, summary: inout PollSummary) async throws {
        try await SiteSessionSetup.prepare(session, for: site)
        // A server without CAPA (RFC 1939 only) may still have UIDL: try it. One whose CAPA
        // leaves UIDL out does not.
        let capabilities = session.capabilities?.lines ?? []
        guard capabilities.isEmpty || session.capabilities?.supportsUIDL == true else {
            throw POP3Error.notSupported("UIDL, which Gatepost needs to retrieve each message exactly once")
        }
        let listing = try await session.uniqueIDs()
        let sizes = Dictionary(try await session.sizes().map { ($0.number, Int64($0.value) ?? 0) }, uniquingKeysWith: { first, _ in first })
        var known = try await catalog.retrievedMessages(site: site.name)
        var deletions: [String] = []

        for entry in listing {
            if let retrieved = known[entry.value] {
                summary.alreadyRetrieved += 1
                // Retrieved earlier but not deleted (a crash, or a QUIT that never came): delete now.
                if site.poll.deleteAfterRetrieve, !retrieved.deleted {
                    try await session.delete(entry.number)
                    deletions.append(entry.value)
                    FailPoint.hit("poll.after-dele")
                }
                continue
            }
            if let size = sizes[entry.number], size > site.poll.maxMessageSize {
                summary.skippedTooLarge += 1
                logger.warning("message left on the server: larger than max_message_size", metadata: [
                    "uidl": "\(entry.value)", "size": "\(size)", "limit": "\(site.poll.maxMessageSize)",
                ])
                continue
            }
            let record = try await retrieve(entry, from: session)
            known[entry.value] = RetrievedMessage(uidl: entry.value, transferID: record.id, deleted: false)
            summary.records.append(record)
            summary.bytes += sizes[entry.number] ?? record.size
            if site.poll.deleteAfterRetrieve {
                try await session.delete(entry.number)
                deletions.append(entry.value)
                FailPoint.hit("poll.after-dele")
            }
        }
        try await session.quit()
        FailPoint.hit("poll.after-quit")
        try await catalog.markDeleted(site: site.name, uidls: deletions)
        summary.deleted = deletions.count
    }

    /// RETR one message into a workspace, classify it, make it durable, commit it.
    private func retrieve(_ entry: POP3ListingEntry, from session: POP3Session) async throws -> TransferRecord {
        let id = TransferRecord.newID()
        let workspace = try spool.makeWorkspace(id: id)
        do {
            let ingest = try MessageIngest(workspace: workspace, limits: limits, maxSize: site.poll.maxMessageSize)
            try await session.retrieve(entry.number) { chunk in
                try ingest.consume(chunk)
                FailPoint.hit("poll.during-retr")
            }
            let result = try ingest.finish()
            let isDuplicate = try await isDuplicate(result)
            let assembled = try TransferAssembler.assemble(result, site: site, id: id, uidl: entry.value, workspace: workspace, duplicate: isDuplicate)
            let folder = try spool.commitWorkspace(workspace, keeping: assembled.keptFiles, site: site.name, id: id)
            var record = assembled.record
            record.path = record.path.map { folder + "/" + $0 }
            FailPoint.hit("poll.before-commit")
            try await catalog.commitReceived(record, uidl: entry.value)
            FailPoint.hit("poll.after-commit")
            try spool.publish(site: site.name, id: id)
            logger.info("received", metadata: [
                "transfer": "\(id)", "type": "\(record.type.rawValue)", "fileName": "\(record.fileName ?? "-")",
                "size": "\(record.size)", "uidl": "\(entry.value)",
            ])
            return record
        } catch {
            // Nothing of this message is committed (or, if the failure came after the commit, the
            // pending folder is published at the next start); it stays on the server.
            try? FileManager.default.removeItem(atPath: workspace)
            throw error
        }
    }

    private func isDuplicate(_ result: MessageIngest.Result) async throws -> Bool {
        guard let messageID = result.parts.first?.header.messageID else { return false }
        return try await catalog.transferID(site: site.name, messageId: messageID) != nil
    }
}
