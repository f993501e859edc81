import Crypto
import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostSMIME
import GatepostPOP3
import GatepostWire
import Logging
import NIOCore
import NIOPosix

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
    /// Messages that could not be retrieved and were gone past (they stay on the server).
    public var skipped: [SkippedMessage] = []
    public var bytes: Int64 = 0
    public var duration: Duration = .zero
    /// When the server's TLS certificate expires, as it showed it (nil without TLS).
    public var serverCertificateExpires: Date?

    public init(site: String) {
        self.site = site
    }
}

/// A poll that failed, with the site and the cause in one line.
public struct SitePollError: Error, Sendable, CustomStringConvertible {
    public var site: String
    public var cause: String
    public var isTransient: Bool
    /// The server's wish (LOGIN-DELAY): do not log in again before this much time has passed.
    public var retryAfter: Duration?
    /// What was achieved before the failure: records committed stay committed.
    public var partial: PollSummary
    /// How many attempts were made.
    public var attempts = 1
    /// What kind of failure, for metrics and alerts.
    public var category: PollFailureCategory = .other

    public var description: String {
        "\(site): \(cause)" + (attempts > 1 ? " (after \(attempts) attempts)" : "")
    }
}

/// What kind of failure a poll met: the metrics' `cause`, and how alerts tell a password that
/// stopped working (at once) from a network that hiccups (after several polls).
public enum PollFailureCategory: String, Sendable, Hashable, Codable, CaseIterable {
    case connection, timeout, tls, authentication, server
    case protocolViolation = "protocol"
    /// The site's settings cannot work (a secret missing, plaintext refused, nothing fits).
    case configuration
    /// The spool or the catalog (disk full, read-only).
    case spool
    case other

    public init(_ error: any Error) {
        switch error {
        case let error as POP3Error:
            switch error {
            case .connectionFailed, .connectionClosed: self = .connection
            case .timeout: self = .timeout
            case .tlsFailed: self = .tls
            case .authenticationFailed: self = .authentication
            case .serverError: self = .server
            case .protocolViolation: self = .protocolViolation
            case .plaintextRefused, .notSupported, .invalidArgument: self = .configuration
            case .invalidState: self = .other
            }
        case is OAuth2Error: self = .authentication
        case is SecretUnavailable: self = .configuration
        case is SpoolError: self = .spool
        default: self = .other
        }
    }
}

/// When to try a failed poll again within one run: transient failures only (network trouble,
/// a server that is busy or says [IN-USE] or [SYS/TEMP]), exponential backoff with "equal
/// jitter" (half the step fixed, half random) so that many sites failing together do not retry
/// in lockstep, yet no retry comes much sooner than its step: full jitter (0 to the step) let a
/// message refused with 451 go again a second later. LOGIN-DELAY is never retried
/// early: the server said how long to wait.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(attempts: Int = 3, baseDelay: Duration = .seconds(2), maxDelay: Duration = .seconds(60)) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    public static let none = RetryPolicy(attempts: 1)

    /// The wait before attempt `attempt + 1` (attempt counts from 1): uniform in
    /// [step / 2, step], the step being base * 2^(attempt-1), capped.
    public func delay(after attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let ceiling = min(maxDelay, baseDelay * (1 << min(attempt - 1, 20)))
        let milliseconds = max(0, ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000)
        return .milliseconds(Int64.random(in: (milliseconds / 2)...milliseconds, using: &random))
    }
}

/// What a poll has received so far: the site, messages, bytes. Called after each committed batch.
public typealias PollProgress = @Sendable (_ site: String, _ messages: Int, _ bytes: Int64) -> Void

/// Polls one site once: connect, authenticate, list, retrieve each new message into the spool
/// and the catalog, delete what the site wants deleted, quit.
///
/// The order is the guarantee (README, "The order of one poll"): a message's files are
/// fsynced and its record and UIDL are committed in one transaction before its DELE is sent, and
/// UIDLs are marked deleted only after QUIT succeeded. A crash or error anywhere leaves each
/// message either recorded once or not at all.
public struct PollJob: Sendable {
    public var site: RemoteSite
    public var spool: Spool
    public var catalog: any Catalog
    public var logger: Logger
    /// Told after each committed batch: the site, messages and bytes received so far.
    public var progress: PollProgress?
    /// The node this runs on, when several share the catalog: each record names it as the
    /// holder of its files.
    public var node: String?
    /// The site's S/MIME keys and trust, loaded by the first message that needs them.
    let smime: LazySMIMECredentials

    public init(site: RemoteSite, spool: Spool, catalog: any Catalog, logger: Logger) {
        self.site = site
        smime = LazySMIMECredentials(settings: site.smime, site: site.name)
        self.spool = spool
        self.catalog = catalog
        var logger = logger
        logger[metadataKey: "site"] = "\(site.name)"
        self.logger = logger
    }

    /// Runs the poll, trying again after transient failures as `policy` says. What earlier
    /// attempts committed stays committed and is not fetched again.
    public func run(retrying policy: RetryPolicy) async throws(SitePollError) -> PollSummary {
        var generator = SystemRandomNumberGenerator()
        var records: [TransferRecord] = []
        var attempt = 1
        while true {
            do {
                var summary = try await run()
                summary.records = records + summary.records
                return summary
            } catch {
                var failure = error
                records += error.partial.records
                failure.partial.records = records
                failure.attempts = attempt
                guard error.isTransient, error.retryAfter == nil, attempt < policy.attempts, !Task.isCancelled else { throw failure }
                let wait = policy.delay(after: attempt, using: &generator)
                logger.warning("poll failed, trying again", metadata: ["error": "\(error.cause)", "attempt": "\(attempt)", "wait": "\(wait)"])
                try? await Task.sleep(for: wait)
                attempt += 1
            }
        }
    }

    public func run() async throws(SitePollError) -> PollSummary {
        let start = ContinuousClock.now
        var summary = PollSummary(site: site.name)
        var loginDelay: Int?
        var listed = false
        do {
            let configuration = try site.pop3Configuration()
            try await POP3Client.withSession(configuration, logger: logger) { session in
                defer { loginDelay = session.capabilities?.loginDelay }
                summary.serverCertificateExpires = await session.serverCertificateExpiry()
                try await poll(session, summary: &summary, listed: &listed)
            }
            await recordSkips(summary.skipped, complete: true)
        } catch {
            if listed { await recordSkips(summary.skipped, complete: false) }
            summary.duration = ContinuousClock.now - start
            let pop3Error = error as? POP3Error
            var retryAfter: Duration?
            if pop3Error?.isLoginDelay == true {
                retryAfter = .seconds(loginDelay ?? 300)
            }
            // Not logged here: the caller reports the error (once) with the site's name.
            throw SitePollError(
                site: site.name, cause: "\(error)", isTransient: pop3Error?.isTransient ?? false,
                retryAfter: retryAfter, partial: summary, category: PollFailureCategory(error)
            )
        }
        summary.duration = ContinuousClock.now - start
        logger.info("poll finished", metadata: [
            "retrieved": "\(summary.records.count)", "deleted": "\(summary.deleted)", "bytes": "\(summary.bytes)",
        ])
        return summary
    }

    /// Keeps the messages this poll went past where operators see them, and reports those
    /// that have failed `poll.stuck_after` polls in a row as stuck. A failure to record is
    /// logged, not the poll's failure: the messages are on the server, tried again anyway.
    private func recordSkips(_ skipped: [SkippedMessage], complete: Bool) async {
        do {
            try await catalog.recordSkips(site: site.name, skipped: skipped, complete: complete)
            guard !skipped.isEmpty else { return }
            let now = Set(skipped.map(\.uidl))
            for skip in try await catalog.siteStates()[site.name]?.skipped ?? [] where now.contains(skip.uidl) && skip.polls >= site.poll.stuckAfter {
                logger.error("message stuck on the server: it could not be retrieved \(skip.polls) polls in a row", metadata: [
                    "uidl": "\(skip.uidl)", "message": "\(skip.number)", "reason": "\(skip.reason)",
                ])
            }
        } catch {
            logger.error("could not record the skipped messages", metadata: ["error": "\(error)"])
        }
    }

    private func poll(_ session: POP3Session, summary: inout PollSummary, listed: inout Bool) async throws {
        try await SiteSessionSetup.prepare(session, for: site)
        let sizeListing = try await session.sizes()
        // What LIST says of each message; none where its answer is not a number.
        let listedSizes = Dictionary(sizeListing.compactMap { entry in Int64(entry.value).map { (entry.number, $0) } }, uniquingKeysWith: { first, _ in first })
        let listing = try await uniqueIDs(session, numbers: sizeListing.map(\.number))
        let known = try await catalog.retrievedMessages(site: site.name)
        listed = true
        let scratch = RawMessageScratch(folder: spool.temporaryRoot)

        // What to do: delete what earlier polls committed but could not delete, retrieve the rest.
        var toRetrieve: [POP3ListingEntry] = []
        var toDelete: [POP3ListingEntry] = []
        // Messages listed under a UIDL the catalog has for another message: by number, the
        // transfer whose UIDL row their record takes over.
        var replacing: [Int: String] = [:]
        var seen: Set<String> = []
        for entry in listing {
            // A server that repeats a UIDL would make one batch commit the same key twice.
            guard seen.insert(entry.value).inserted else {
                logger.warning("the server lists a UIDL twice; the second message waits", metadata: ["uidl": "\(entry.value)", "message": "\(entry.number)"])
                continue
            }
            if let retrieved = known[entry.value] {
                if let reason = try await isAnotherMessage(entry, recorded: retrieved, listedSize: listedSizes[entry.number], session: session) {
                    logger.notice("a new message under a UIDL already recorded; fetching it", metadata: [
                        "uidl": "\(entry.value)", "message": "\(entry.number)", "reason": "\(reason)",
                    ])
                    replacing[entry.number] = retrieved.transferID
                } else {
                    summary.alreadyRetrieved += 1
                    // Retrieved earlier but not deleted (a crash, or a QUIT that never came), or
                    // deleted and listed again (a server that did not delete): delete now.
                    if site.poll.deleteAfterRetrieve { toDelete.append(entry) }
                    continue
                }
            }
            if let size = listedSizes[entry.number], size > site.poll.maxMessageSize {
                summary.skippedTooLarge += 1
                logger.warning("message left on the server: larger than max_message_size", metadata: [
                    "uidl": "\(entry.value)", "size": "\(size)", "limit": "\(site.poll.maxMessageSize)",
                ])
                continue
            }
            toRetrieve.append(entry)
        }

        // The order of the work (pipelining, batches, commits, DELEs, QUIT) is the machine's;
        // this loop performs its actions and reports what happened.
        var machine = PollStateMachine<StagedMessage>(
            settings: .init(
                deleteAfterRetrieve: site.poll.deleteAfterRetrieve, commitBatch: site.poll.commitBatch,
                batchBytes: Self.batchBytes,
                window: session.capabilities?.supportsPipelining == true ? Self.pipelineWindow : 1,
                commitsInFlight: Self.commitsInFlight
            ),
            toDelete: toDelete, toRetrieve: toRetrieve
        )
        var commits: [Int: Task<CommittedBatch, any Error>] = [:]
        var lastCommit: Task<CommittedBatch, any Error>?
        var action = machine.start()
        while true {
            switch action {
            case .send(let commands):
                do {
                    try await session.sendPipelined(commands)
                    action = machine.sent()
                } catch {
                    action = machine.failed(error)
                }
            case .receive(let entry, let pipelined, let recordedBefore):
                do {
                    var message = try await retrieve(
                        entry, from: session, scratch: scratch, pipelined: pipelined, staged: machine.unsettledBatches,
                        recordedBefore: recordedBefore
                    )
                    message.listedSize = listedSizes[entry.number]
                    message.replacing = replacing[entry.number]
                    action = machine.messageStaged(message)
                } catch {
                    guard Self.isThisMessageOnly(error) else {
                        action = machine.failed(error)
                        break
                    }
                    do {
                        // Larger than allowed: the rest of its data is still coming; read it
                        // past (nothing kept) so the session stays in step for the others.
                        if error is MessageIngest.IngestError {
                            try await session.receivePipelinedData(of: .retr(entry.number)) { _ in }
                        }
                        logger.warning("message skipped; it stays on the server and is tried again at the next poll", metadata: [
                            "uidl": "\(entry.value)", "message": "\(entry.number)", "reason": "\(error)",
                        ])
                        summary.skipped.append(SkippedMessage(uidl: entry.value, number: entry.number, reason: "\(error)", at: Date()))
                        action = machine.messageSkipped(entry)
                    } catch {
                        action = machine.failed(error)
                    }
                }
            case .awaitDelete(let entry, let pipelined):
                do {
                    if pipelined {
                        let status = try await session.awaitPipelinedStatus(of: .dele(entry.number))
                        guard status.isOK else { throw POP3Error.serverError(command: "DELE \(entry.number)", status: status) }
                    } else {
                        try await session.delete(entry.number)
                    }
                    FailPoint.hit("poll.after-dele")
                    action = machine.deleteAnswered(entry)
                } catch {
                    action = machine.failed(error)
                }
            case .commit(let batch, let messages, let after):
                let previous = after == nil ? nil : lastCommit
                let task = Task { [self] in try await self.commit(messages, after: previous) }
                commits[batch] = task
                lastCommit = task
                action = machine.commitStarted()
            case .awaitCommit(let batch):
                guard let task = commits.removeValue(forKey: batch) else {
                    preconditionFailure("poll: batch \(batch) awaited but never started")
                }
                do {
                    let committed = try await task.value
                    // The summary first: whatever fails next, these are committed.
                    for message in committed.recorded {
                        summary.records.append(message.record)
                        summary.records += message.siblings.map(\.record)
                        summary.bytes += message.listedSize ?? message.wireSize
                    }
                    summary.alreadyRetrieved += committed.recordedElsewhere
                    progress?(site.name, summary.records.count, summary.bytes)
                    action = machine.batchCommitted(batch, leftOut: committed.leftOut)
                } catch {
                    logger.error("could not commit the messages received", metadata: ["error": "\(error)"])
                    action = machine.batchFailed(batch, error)
                }
            case .quit:
                do {
                    try await session.quit()
                    FailPoint.hit("poll.after-quit")
                    action = machine.quitAnswered()
                } catch {
                    action = machine.failed(error)
                }
            case .markDeleted(let uidls):
                do {
                    try await catalog.markDeleted(site: site.name, uidls: uidls)
                    summary.deleted = uidls.count
                    action = machine.markedDeleted()
                } catch {
                    action = machine.failed(error)
                }
            case .finish:
                return
            case .fail(let error):
                throw error
            }
        }
    }

    /// Whether a failure to retrieve a message is that message's alone, the session still in
    /// step: the server refused its RETR, or it proved larger than `max_message_size` while
    /// streaming (LIST understated it). Anything else (the connection, a protocol violation, the
    /// disk) ends the poll.
    static func isThisMessageOnly(_ error: any Error) -> Bool {
        if case .serverError(let command, _)? = error as? POP3Error, command.hasPrefix("RETR") { return true }
        if case .tooLarge? = error as? MessageIngest.IngestError { return true }
        return false
    }

    /// Why the message listed under a UIDL the catalog has is not the message recorded under it,
    /// or nil when it is (``RecordedMessageCheck``). The header (TOP n 0) is read only when the
    /// sizes agree and the message would be deleted: a site that leaves mail on the server is
    /// not asked for every header at every poll. A server that cannot answer TOP leaves the
    /// sizes to decide.
    private func isAnotherMessage(
        _ entry: POP3ListingEntry, recorded: RetrievedMessage, listedSize: Int64?, session: POP3Session
    ) async throws -> String? {
        switch RecordedMessageCheck.compare(recorded, listedSize: listedSize) {
        case .same:
            return nil
        case .different(let reason):
            return reason
        case .needsHeader:
            guard site.poll.deleteAfterRetrieve || recorded.deleted else { return nil }
            let answer: Result<[UInt8], POP3Error>
            do {
                answer = .success(try await session.top(entry.number, lines: 0))
            } catch {
                answer = .failure(error)
            }
            let header: [UInt8]
            switch answer {
            case .success(let bytes):
                header = bytes
            case .failure(.serverError):
                logger.notice("the server cannot show the header (TOP); the size decides", metadata: ["uidl": "\(entry.value)"])
                return nil
            case .failure(let error):
                throw error
            }
            let messageId = MessageHeader.parse(header).messageID
            if case .different(let reason) = RecordedMessageCheck.compare(recorded, listedSize: listedSize, headerMessageId: .some(messageId)) {
                return reason
            }
            return nil
        }
    }

    /// UIDL, or for a server without it, a stand-in id per message from its header (TOP n 0):
    /// its Message-ID, else the SHA-256 of the header block. Either way a message already in the
    /// catalog is recognized and not fetched again.
    private func uniqueIDs(_ session: POP3Session, numbers: [Int]) async throws -> [POP3ListingEntry] {
        // A server without CAPA (RFC 1939 only) may still have UIDL: try it.
        let capabilities = session.capabilities?.lines ?? []
        if capabilities.isEmpty || session.capabilities?.supportsUIDL == true {
            let result: Result<[POP3ListingEntry], POP3Error>
            do {
                result = .success(try await session.uniqueIDs())
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success(let entries):
                return entries
            case .failure(.serverError):
                logger.notice("the server has no UIDL; identifying messages by their headers")
            case .failure(let error):
                throw error
            }
        }
        var entries: [POP3ListingEntry] = []
        var used: Set<String> = []
        for number in numbers {
            let header = try await session.top(number, lines: 0)
            let parsed = MessageHeader.parse(header)
            var key = parsed.messageID.map { "message-id:\($0)" } ?? "header-sha256:\(hexString(SHA256.hash(data: header)))"
            // Two copies of one message in the mailbox: the second gets its own key (and is
            // recorded as a DUPLICATE) instead of clashing with the first.
            var copy = 1
            let base = key
            while used.contains(key) {
                copy += 1
                key = "\(base)#\(copy)"
            }
            used.insert(key)
            entries.append(POP3ListingEntry(number: number, value: key))
        }
        return entries
    }

    /// How many RETRs may be unanswered at once when the server offers PIPELINING.
    static let pipelineWindow = 16

    /// A message received and assembled (its bodies in memory, or in files in `tmp/`), not yet
    /// durable nor committed: it waits for the rest of its batch.
    /// A batch is not committed when the one before it failed: the catalog commits in order.
    struct EarlierBatchFailed: Error, CustomStringConvertible {
        var description: String { "not committed, because the batch received before it was not" }
    }

    struct StagedMessage: PollStagedMessage {
        var entry: POP3ListingEntry
        /// In memory or in `tmp/` until the batch is committed.
        var files: [TransferAssembler.KeptFile]
        var record: TransferRecord
        /// More transfers of the same message (`classify.split_attachments`), committed with it.
        var siblings: [TransferAssembler.Sibling] = []
        var acknowledgment: OutboxEntry?
        var wireSize: Int64
        /// Memory its bodies hold (``HeldBodies``), released when its batch is done.
        var heldBytes: Int
        /// What LIST said of its size, kept with its UIDL.
        var listedSize: Int64?
        /// The transfer recorded earlier under the same UIDL (a server reusing UIDLs).
        var replacing: String?

        /// Removes its files wherever a failure left them (still in `tmp/`, or already under
        /// a pending name in the site's folder) and its acknowledgment: nothing of it was
        /// committed, and the message stays on the server.
        func discardFiles(spool: Spool, site: String) {
            for (id, files) in [(record.id, files)] + siblings.map({ ($0.record.id, $0.files) }) {
                for file in files {
                    if case .file(let source) = file.content { unlink(source) }
                    unlink(spool.pendingPath(site: site, id: id, suffix: file.suffix))
                }
            }
            if let acknowledgment { unlink(acknowledgment.path) }
        }
    }

    /// Messages committed together: at most the site's `commit_batch`, or this many bytes, or
    /// whatever is received when no RETR is left in flight.
    static let batchBytes: Int64 = 8 << 20
    /// Batches being committed while the next is received: two absorb a slow fsync.
    static let commitsInFlight = 2

    /// - Parameter recordedBefore: the catalog left this message out of a commit, its
    ///   Message-ID recorded before: the catalog is asked which transfer has it.
    private func retrieve(
        _ entry: POP3ListingEntry, from session: POP3Session, scratch: RawMessageScratch, pipelined: Bool,
        staged: [[StagedMessage]], recordedBefore: Bool
    ) async throws -> StagedMessage {
        let id = TransferRecord.newID()
        let filePrefix = spool.temporaryPrefix(id: id)
        let ingest = try MessageIngest(filePrefix: filePrefix, raw: scratch, limits: site.poll.limits, maxSize: site.poll.maxMessageSize)
        // What the assembly kept (the whole message, converted texts) is removed too on failure.
        var keptFiles: [TransferAssembler.KeptFile] = []
        // Memory held by the bodies of an S/MIME layer's content.
        var securedHeld = 0
        do {
            let consume: (ByteBuffer) async throws -> Void = { chunk in
                try ingest.consume(chunk)
                FailPoint.hit("poll.during-retr")
            }
            if pipelined {
                let command = POP3Command.retr(entry.number)
                let status = try await session.awaitPipelinedStatus(of: command)
                guard status.isOK else { throw POP3Error.serverError(command: command.logDescription, status: status) }
                try await session.receivePipelinedData(of: command, consumer: consume)
            } else {
                try await session.retrieve(entry.number, consumer: consume)
            }
            let result = try ingest.finish()
            // A catalog across the network is not asked per message (a round trip each was most
            // of a poll): the batch's commit finds what was recorded before, and leaves it out.
            let duplicate = try await duplicateOf(result, staged: staged, askCatalog: !catalog.lookupsAreRemote || recordedBefore)
            // S/MIME layers off (decrypted, verified, the receipt's MIC computed), before the
            // content is classified; a duplicate is kept whole as it came.
            let header = result.parts.first?.header ?? MessageHeader()
            let receiptMIC = AcknowledgmentPolicy.receiptMIC(header: header, site: site)
            var secured: SecureContent.Outcome?
            if duplicate == nil, SecureContent.applies(to: result, site: site, receiptRequested: receiptMIC != nil) {
                // Decrypting and verifying read and write whole files (seconds for a large
                // one): on a thread of its own, never on the concurrency pool.
                let unwrapping = SecureContent(
                    site: site, credentials: smime, filePrefix: filePrefix, receiptMIC: receiptMIC,
                    senders: header["From"].map(TransferAssembler.addresses) ?? []
                )
                let message = Transferred(value: result)
                secured = try await offloaded { Transferred(value: try unwrapping.unwrap(message.value)) }.value
                securedHeld = secured?.heldBytes ?? 0
            }
            let assembled: TransferAssembler.Assembled
            do {
                assembled = try TransferAssembler.assemble(
                    result, site: site, id: id, uidl: entry.value, filePrefix: filePrefix, duplicateOf: duplicate, secured: secured
                )
            } catch {
                for path in secured?.files ?? [] { unlink(path) }
                throw error
            }
            keptFiles = assembled.files + assembled.siblings.flatMap(\.files)
            var record = assembled.record
            record.path = spool.transferPath(site: site.name, id: id)
            record.node = node
            if let probe = try await returnedProbe(result, record: record) {
                record.type = .probe
                record.fileName = nil
                record.application = nil
                record.classification = "a probe this gateway sent at \(OperatorText.timestamp(probe.sentAt)): the path works"
            }
            let siblings = assembled.siblings.map { sibling in
                var sibling = sibling
                sibling.record.path = spool.transferPath(site: site.name, id: sibling.record.id)
                sibling.record.node = node
                return sibling
            }
            let acknowledgment = try await acknowledgment(for: &record, header: result.parts.first?.header ?? MessageHeader())
            return StagedMessage(
                entry: entry, files: assembled.files, record: record, siblings: siblings,
                acknowledgment: acknowledgment, wireSize: result.rawSize, heldBytes: ingest.heldBytes + securedHeld
            )
        } catch {
            // Nothing of this message is committed; it stays on the server.
            ingest.discard()
            for file in keptFiles {
                if case .file(let path) = file.content { unlink(path) }
            }
            HeldBodies.release(ingest.heldBytes + securedHeld)
            throw error
        }
    }

    /// A batch's commit: the messages recorded, those the catalog left out (by number):
    /// recorded before under their Message-ID, and how many of those another poller recorded
    /// under the same UIDL (recorded: they may be deleted, and are not taken again).
    struct CommittedBatch: Sendable {
        var recorded: [StagedMessage]
        var leftOut: Set<Int>
        var recordedElsewhere = 0
    }

    /// Makes a batch durable and commits it: its files written or moved to pending names in `in/`
    /// and fsynced, then (after `previous`, the batch before it, is committed) one catalog
    /// transaction for all records, UIDLs and owed acknowledgments; only then may the caller
    /// send DELEs. On failure nothing of the batch is committed, its files are removed (or, after
    /// a crash, at the next start), and every message stays on the server. So are the files of
    /// a message the catalog leaves out, which stays on the server too.
    private func commit(_ batch: [StagedMessage], after previous: Task<CommittedBatch, any Error>? = nil) async throws -> CommittedBatch {
        // Whatever happens, the bodies this batch held in memory are gone after it.
        defer { HeldBodies.release(batch.reduce(0) { $0 + $1.heldBytes }) }
        guard !batch.isEmpty else { return CommittedBatch(recorded: [], leftOut: []) }
        let recordedBefore: [String: RecordedBefore]
        do {
            // fsync blocks: on NIO's thread pool, not on a thread of the concurrency pool.
            let files = batch.flatMap { [($0.record.id, $0.files)] + $0.siblings.map { ($0.record.id, $0.files) } }
            try await NIOThreadPool.singleton.runIfActive { [spool, site] in
                try spool.commitFiles(files, site: site.name)
            }
            if let previous {
                do {
                    _ = try await previous.value
                } catch {
                    throw EarlierBatchFailed()
                }
            }
            FailPoint.hit("poll.before-commit")
            // Beyond cancellation: a shutdown must not turn received and durable messages into
            // a second download (GRDB checks for cancellation before it writes).
            // The first transfer of a message holds its UIDL; its siblings come in the same
            // transaction, without one.
            let items = batch.flatMap { message in
                [ReceivedTransfer(
                    record: message.record, uidl: message.entry.value, acknowledgment: message.acknowledgment,
                    listedSize: message.listedSize, replacing: message.replacing
                )] + message.siblings.map { ReceivedTransfer(record: $0.record, uidl: nil) }
            }
            let leftOut = try await uncancellable { [catalog] in try await catalog.commitReceived(items) }
            recordedBefore = Dictionary(leftOut.map { ($0.id, $0) }) { first, _ in first }
        } catch {
            for message in batch {
                message.discardFiles(spool: spool, site: site.name)
            }
            throw error
        }
        FailPoint.hit("poll.after-commit")
        var recorded: [StagedMessage] = []
        var leftOut: Set<Int> = []
        var recordedElsewhere = 0
        for message in batch {
            if let earlier = recordedBefore[message.record.id] {
                // Recorded before (a copy a partner sent again, or this very message taken by
                // another node polling the site at the same time): nothing of it is kept.
                message.discardFiles(spool: spool, site: site.name)
                if earlier.uidlRecorded {
                    recordedElsewhere += 1
                    logger.notice("recorded meanwhile by another poller of the site", metadata: [
                        "uidl": "\(message.entry.value)", "transfer": "\(earlier.transferId)",
                    ])
                } else {
                    leftOut.insert(message.entry.number)
                    logger.notice("a copy of a message recorded before: left on the server, to be recorded as a duplicate", metadata: [
                        "uidl": "\(message.entry.value)", "messageId": "\(earlier.messageId)", "transfer": "\(earlier.transferId)",
                    ])
                }
                continue
            }
            recorded.append(message)
            do {
                try spool.publish(site: site.name, id: message.record.id, suffixes: message.files.map(\.suffix))
                for sibling in message.siblings {
                    try spool.publish(site: site.name, id: sibling.record.id, suffixes: sibling.files.map(\.suffix))
                }
            } catch {
                // Committed: the pending files are published at the next start.
                logger.error("received, but its files keep their pending names until the next start", metadata: [
                    "transfer": "\(message.record.id)", "error": "\(error)",
                ])
            }
            logger.info("received", metadata: [
                "transfer": "\(message.record.id)", "type": "\(message.record.type.rawValue)",
                "fileName": "\(message.record.fileName ?? "-")", "size": "\(message.record.size)", "uidl": "\(message.entry.value)",
            ])
        }
        return CommittedBatch(recorded: recorded, leftOut: leftOut, recordedElsewhere: recordedElsewhere)
    }

    /// The MDN this message asked for, written to the spool's `out/` (fsynced) so that its outbox
    /// entry can be committed with the record; the record's `ack` says what happened.
    private func acknowledgment(for record: inout TransferRecord, header: MessageHeader) async throws -> OutboxEntry? {
        switch AcknowledgmentPolicy.decide(record: record, header: header, site: site) {
        case .notRequested:
            record.ack = .none
            return nil
        case .refused(let reason):
            record.ack = .failed
            // Said on the transfer, beside whatever error it already has (a RECOVER's, say).
            record.error = [record.error, "acknowledgment not sent: \(reason)"].compactMap { $0 }.joined(separator: "; ")
            logger.warning("acknowledgment requested but not sent", metadata: ["transfer": "\(record.id)", "reason": "\(reason)"])
            return nil
        case .send(let recipients, let from, let finalRecipient, let receipt):
            record.ack = .requested
            // The MDN is written and fsynced, and a signed one's key may be opened first (a
            // PKCS#12 file's key derivation is slow by design): on NIO's thread pool, not the
            // concurrency pool.
            let record = record
            return try await NIOThreadPool.singleton.runIfActive { [spool, smime] in
                let identity = if case .signed = receipt { try smime.get()?.identity } else { SMIMEIdentity?.none }
                return try AcknowledgmentWriter.write(
                    for: record, header: header, to: recipients, from: from, finalRecipient: finalRecipient,
                    receipt: receipt, identity: identity, spool: spool
                )
            }
        }
    }

    /// The probe this message is, if it is one this gateway sent to this site and still
    /// waits for (``Probes``): only then is the header believed.
    private func returnedProbe(_ result: MessageIngest.Result, record: TransferRecord) async throws -> Probe? {
        guard site.probe != nil, result.parts.first?.header[Probes.header] != nil, let messageId = record.messageId,
              let probe = try await catalog.probe(site: site.name, messageId: messageId), probe.returnedAt == nil
        else { return nil }
        return probe
    }

    /// Why this message is a DUPLICATE (a sentence for the record), or nil: the site already has
    /// a transfer with its Message-ID, or, for a message without one, with the same content.
    /// `batches` hold the messages received but perhaps not yet in the catalog: the batch being
    /// committed and the one being received. Without `askCatalog`, the catalog is asked about
    /// a Message-ID only when they hold it (the commit finds the rest).
    private func duplicateOf(
        _ result: MessageIngest.Result, staged batches: [[StagedMessage]], askCatalog: Bool
    ) async throws -> String? {
        // The batches are searched in place: copying them per message showed in the profile.
        let staged = batches.lazy.joined()
        if let messageID = result.parts.first?.header.messageID {
            let copyOf = staged.first { $0.record.messageId == messageID }?.record.id
            // A copy of a message this poll holds names the catalog's transfer if there is one:
            // the message it holds may be one the commit leaves out, and a DUPLICATE must name
            // a transfer that exists.
            let recorded = askCatalog || copyOf != nil ? try await catalog.transferID(site: site.name, messageId: messageID) : nil
            let earlier = recorded ?? copyOf
            return earlier.map { "already received as transfer \($0) (same Message-ID)" }
        }
        let earlier = try await catalog.transferID(site: site.name, messageSha256: result.rawSHA256)
            ?? staged.first { $0.record.messageId == nil && $0.record.messageSha256 == result.rawSHA256 }?.record.id
        return earlier.map { "already received as transfer \($0) (no Message-ID; same content)" }
    }
}

