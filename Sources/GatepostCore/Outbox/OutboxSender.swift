import Crypto
import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostSMIME
import GatepostSMTP
import GatepostWire
import Logging
import NIOCore
import NIOSSL

extension RemoteSite.SMTP {
    /// The SMTP connection settings, with certificate verification on unless the site turned it off.
    public func connectionConfiguration() throws -> SMTPConnectionConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let caFile = tls.caFile { configuration.trustRoots = .file(caFile) }
        if !tls.verify { configuration.certificateVerification = .none }
        if let certificate = tls.clientCertificate, let key = tls.clientKey {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        return SMTPConnectionConfiguration(
            host: host, port: port, security: security, tls: configuration,
            readTimeout: TimeAmount(readTimeout), finalReplyTimeout: TimeAmount(readTimeout * 2),
            allowInsecureAuth: allowPlaintextPassword
        )
    }

    /// The password, or with `oauth2:` a client-credentials token (cached until shortly before
    /// it expires); nil sends without AUTH.
    func credentials() async throws -> SASLCredentials? {
        guard let user else { return nil }
        if let oauth2 {
            return SASLCredentials(user: user, bearerToken: try await OAuth2TokenProvider.shared.token(for: oauth2))
        }
        guard let password else { return nil }
        return SASLCredentials(user: user, password: try password.resolve())
    }

    /// Connects, secures and authenticates as the outbox would, then runs `body`. A token the
    /// server refused is dropped, so the next attempt fetches a new one.
    public func withSession<Result: Sendable>(logger: Logger, _ body: (SMTPSession) async throws -> Result) async throws -> Result {
        let configuration = try connectionConfiguration()
        let credentials = try await credentials()
        do {
            return try await SMTPClient.withSession(configuration, credentials: credentials, logger: logger, body)
        } catch let error as SMTPError {
            if case .authenticationFailed = error, let oauth2 { await OAuth2TokenProvider.shared.invalidate(oauth2) }
            throw error
        }
    }
}

extension RemoteSite.SMTP {
    /// Sends one small message held in memory (an alert, a probe) in a session of its own.
    public func send(_ message: [UInt8], from: String, to recipients: [String], logger: Logger) async throws {
        let body = AsyncStream<ByteBuffer> { continuation in
            continuation.yield(ByteBuffer(bytes: message))
            continuation.finish()
        }
        _ = try await withSession(logger: logger) { session in
            try await session.send(envelope: SMTPEnvelope(from: from, recipients: recipients), message: body, messageSize: message.count)
        }
    }
}

/// Delivers the outbox: every due entry goes to its site's SMTP server. A 2xx for at least one
/// recipient makes it sent (recipients refused with a 4xx get an entry of their own, tried
/// again later); a temporary failure (4xx, a lost connection, a timeout) is tried again with
/// growing, jittered delays for up to `maxAge`, as mail servers do; a permanent one (5xx for
/// every recipient, unusable settings) fails it at once. `gatepost catalog retry` requeues.
public struct OutboxSender: Sendable {
    public var sites: [String: RemoteSite]
    public var catalog: any Catalog
    public var logger: Logger
    public var retry = RetryPolicy(attempts: Int.max, baseDelay: .seconds(30), maxDelay: .seconds(3600))
    /// How long a message is tried before it fails for good (counted from when it was queued).
    public var maxAge: TimeInterval = 4 * 24 * 3600
    /// How long a claimed entry is ours: if this process dies while sending, another one takes
    /// it up after this.
    static let claimLease: TimeInterval = 600
    /// This node and its spool, with several nodes on one catalog: the entries whose message
    /// file is in its spool are its to send, and those of a node that is not alive when their
    /// file reads here (``NodeTakeOver``); each is claimed before it is sent. Nil: every entry
    /// (one node).
    public var node: NodeSpool?

    public struct NodeSpool: Sendable {
        public var name: String
        public var root: String

        public init(name: String, root: String) {
            self.name = name
            self.root = root
        }
    }

    public init(sites: [RemoteSite], catalog: any Catalog, logger: Logger) {
        self.init(sitesByName: Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }), catalog: catalog, logger: logger)
    }

    /// With the sites already by name: a daemon's poll round does not index thousands of
    /// sites again for each poll.
    public init(sitesByName: [String: RemoteSite], catalog: any Catalog, logger: Logger) {
        self.sites = sitesByName
        self.catalog = catalog
        self.logger = logger
    }

    public struct Summary: Sendable {
        public var sent = 0
        public var retrying = 0
        public var failed = 0
        /// Outbound transfers that became overdue in this run (``markOverdue(site:now:)``).
        public var overdue = 0
    }

    /// Sends what is due, of one site or all; one SMTP session per site.
    @discardableResult
    public func sendDue(site name: String? = nil, now: Date = Date()) async throws -> Summary {
        let clock = RunClock(startingAt: now)
        var ours: [OutboxEntry] = []
        var takeOver = NodeTakeOver(catalog: catalog, node: node?.name)
        for entry in try await catalog.dueOutbox(site: name, at: now) {
            if let node, !entry.path.hasPrefix(node.root + "/") {
                let holder = try await catalog.transfer(id: entry.transferId)?.node
                guard await takeOver.includes(holder, file: entry.path) else { continue }
            }
            ours.append(entry)
        }
        var summary = Summary()
        for (siteName, entries) in Dictionary(grouping: ours, by: \.site).sorted(by: { $0.key < $1.key }) {
            // Claimed just before its site's session: claimed all at the start, the last of a
            // long backlog (a dead node's, taken up) could see its claim end before its turn,
            // and another node send it too.
            let at = clock.now
            var claimed: [OutboxEntry] = []
            for entry in entries where try await catalog.claimOutbox(entry.id, due: at, until: at.addingTimeInterval(Self.claimLease)) {
                claimed.append(entry)
            }
            guard !claimed.isEmpty else { continue }
            let entries = claimed
            guard let site = sites[siteName], let smtp = site.smtp else {
                for entry in entries {
                    await fail(entry, error: "site \(siteName) has no smtp: settings", permanent: true, summary: &summary)
                }
                continue
            }
            await send(entries, site: site, smtp: smtp, summary: &summary)
        }
        for site in sites.values.sorted(by: { $0.name < $1.name }) where name == nil || site.name == name {
            summary.overdue += try await markOverdue(site: site, now: now).count
        }
        return summary
    }

    /// The site's outbound transfers sent longer than its `smtp.ack_timeout` ago with no
    /// acknowledgment become `overdue`, each logged once (when it becomes so).
    @discardableResult
    public func markOverdue(site: RemoteSite, now: Date = Date()) async throws -> [TransferRecord] {
        guard let timeout = site.smtp?.acknowledgmentTimeout else { return [] }
        let overdue = try await catalog.markOverdue(site: site.name, sentBefore: now.addingTimeInterval(-timeout.timeInterval))
        for transfer in overdue {
            logger.warning("no acknowledgment within the site's ack_timeout", metadata: [
                "site": "\(site.name)", "transfer": "\(transfer.id)", "file": "\(transfer.fileName ?? "")",
                "ackTimeout": "\(DurationText.describe(timeout))",
            ])
        }
        return overdue
    }

    private func send(_ entries: [OutboxEntry], site: RemoteSite, smtp: RemoteSite.SMTP, summary: inout Summary) async {
        var logger = logger
        logger[metadataKey: "site"] = "\(site.name)"
        var answered: Set<String> = []
        var sessionSummary = Summary()
        do {
            try await smtp.withSession(logger: logger) { session in
                for entry in entries {
                    // A file asks for delivery reports, tagged with its transfer's id; an MDN
                    // does not (no reports on reports: it goes from the null sender).
                    let envelope = SMTPEnvelope(
                        from: entry.mailFrom, recipients: entry.recipients,
                        deliveryStatus: entry.kind == .file && smtp.deliveryReports != .none
                            ? DeliveryStatusRequest(envelopeID: entry.transferId, notify: smtp.deliveryReports.notify) : nil
                    )
                    let outcome: Result<SMTPSendResult, SMTPError>
                    do throws(SMTPError) {
                        outcome = .success(try await session.send(envelope: envelope, messageFileAt: entry.path))
                    } catch {
                        outcome = .failure(error)
                    }
                    // Recorded at once, before the next message: the server has answered this
                    // one, and a later failure (or a shutdown) must not make it go out again.
                    answered.insert(entry.id)
                    switch outcome {
                    case .success(let result):
                        await sent(entry, result: result, summary: &sessionSummary)
                    case .failure(let error):
                        await fail(entry, error: error.description, permanent: !error.isTransient, summary: &sessionSummary)
                        if !Self.sessionContinues(after: error) { return }
                    }
                }
            }
        } catch {
            // The session itself failed (connect, TLS, AUTH, settings): every entry not yet
            // answered waits, unless the settings themselves are unusable.
            let transient = (error as? SMTPError)?.isTransient ?? (error is OAuth2Error)
            for entry in entries where !answered.contains(entry.id) {
                await fail(entry, error: "\(error)", permanent: !transient, summary: &sessionSummary)
            }
        }
        summary.sent += sessionSummary.sent
        summary.retrying += sessionSummary.retrying
        summary.failed += sessionSummary.failed
    }

    /// After a refused message the session is still good for the next one; after a lost
    /// connection or a timeout it is not.
    static func sessionContinues(after error: SMTPError) -> Bool {
        if case .messageRefused = error { return true }
        return false
    }

    private func sent(_ entry: OutboxEntry, result: SMTPSendResult, summary: inout Summary) async {
        let later = result.recipients.filter { $0.status == .refusedTemporarily }.map(\.recipient)
        let never = result.recipients.filter { $0.status == .refusedPermanently }.map(\.recipient)
        var followUp: OutboxEntry?
        if !later.isEmpty {
            var next = entry
            next.id = entry.id + "-\(entry.attempts + 1)"
            next.recipients = later
            next.attempts = 0
            next.lastError = "refused for now by the server"
            next.nextAttempt = nextAttempt(after: 1)
            followUp = next
        }
        do {
            try await uncancellable { [catalog, followUp] in
                try await catalog.outboxSent(entry, at: Date(), refused: never, followUp: followUp)
            }
            summary.sent += 1
            logger.info("sent", metadata: [
                "kind": "\(entry.kind.rawValue)", "messageId": "\(entry.messageId)",
                "to": "\(result.acceptedRecipients.joined(separator: ","))",
                "later": "\(later.joined(separator: ","))", "refused": "\(never.joined(separator: ","))",
            ])
        } catch {
            // The server has the message; the catalog did not take the news. The claim lease
            // runs out and the message goes again: a duplicate, never a loss.
            logger.error("sent, but not recorded", metadata: ["messageId": "\(entry.messageId)", "error": "\(error)"])
        }
    }

    private func nextAttempt(after attempt: Int) -> Date {
        var random = SystemRandomNumberGenerator()
        let delay = retry.delay(after: max(1, attempt), using: &random)
        let seconds = delay.timeInterval
        return Date().addingTimeInterval(max(1, seconds))
    }

    private func fail(_ entry: OutboxEntry, error: String, permanent: Bool, summary: inout Summary) async {
        let attempt = entry.attempts + 1
        let expired = Date().timeIntervalSince(entry.createdAt) >= maxAge
        do {
            if permanent || expired {
                let reason = expired && !permanent ? "\(error) (still failing after \(Int(maxAge / 3600)) hours)" : error
                try await uncancellable { [catalog] in try await catalog.outboxFailed(entry, error: reason, retryAt: nil) }
                summary.failed += 1
                logger.error("not sent", metadata: ["messageId": "\(entry.messageId)", "error": "\(reason)"])
            } else {
                let retryAt = nextAttempt(after: attempt)
                try await uncancellable { [catalog] in try await catalog.outboxFailed(entry, error: error, retryAt: retryAt) }
                summary.retrying += 1
                logger.warning("not sent yet; will retry", metadata: [
                    "messageId": "\(entry.messageId)", "error": "\(error)", "next": "\(retryAt)",
                ])
            }
        } catch {
            logger.error("outbox not updated", metadata: ["messageId": "\(entry.messageId)", "error": "\(error)"])
        }
    }
}

/// Runs a catalog update to its end even when the calling task is being cancelled (a shutdown):
/// what the SMTP server already answered must be written down.
func uncancellable<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await Task { try await operation() }.value
}

/// `gatepost send`: one file to a partner as multipart/mixed with a Disposition-Notification-To
/// request, recorded as an outbound transfer and queued in the outbox.
/// A file's message signed and/or encrypted with S/MIME (``OutboundTransfer``): the file's MIME
/// entity (its text and the file, as unsigned), signed (multipart/signed), then encrypted
/// (application/pkcs7-mime), each step a file in `tmp/`, then the message in `out/`.
struct SecuredMessage: Sendable {
    var header: MessageComposer.Fields
    var text: String
    var path: String
    var fileName: String
    /// `tmp/<id>`: the steps' files start with it, and are removed at the end.
    var prefix: String
    var credentials: SMIMECredentials
    var sign: Bool
    var encrypt: Bool
    var digest: MICAlgorithm
    var cipher: String
    var asksSignedReceipt: Bool

    struct Written: Sendable {
        var written: (path: String, size: Int64, sha256: String)
        var security: MessageSecurity
        /// Size and SHA-256 of the file itself, as it went into the entity.
        var fileSize: Int64
        var fileSHA256: String
    }

    func write(into spool: Spool, name: String) throws -> Written {
        var scratch: [String] = []
        defer { for file in scratch { unlink(file) } }
        var hasher = SHA256()
        var fileSize: Int64 = 0
        let entity = prefix + ".entity"
        scratch.append(entity)
        let entityWriter = try SpoolFileWriter(path: entity, hashing: false)
        try MessageComposer.writeFileMessage(
            header: [], text: text, filePath: path, fileName: fileName,
            fileData: { data in
                hasher.update(data: data)
                fileSize += Int64(data.count)
            },
            write: { try entityWriter.write($0) }
        )
        _ = try entityWriter.finish()
        // The MIC a signed receipt returns: over what is signed, or else what is encrypted
        // (RFC 4130 section 7.3.1's convention, which AS1 partners follow).
        var security = MessageSecurity(mic: try MICHasher.mic(ofFile: entity, algorithm: digest), signedReceiptRequested: asksSignedReceipt ? true : nil)
        var content = entity
        if sign, let identity = credentials.identity {
            let signature = try CMS.signDetached(content: entity, identity: identity, digest: digest.openSSLName)
            let parts = MessageComposer.signedEntity(signature: signature, micalg: digest.rawValue)
            content = prefix + ".signed"
            scratch.append(content)
            let signedWriter = try SpoolFileWriter(path: content, hashing: false)
            try signedWriter.write(contentsOf: parts.head)
            try MessageComposer.writeFile(entity) { try signedWriter.write($0) }
            try signedWriter.write(contentsOf: parts.tail)
            _ = try signedWriter.finish()
            security.signedBy = identity.certificate.subject
        }
        var encrypted: String?
        if encrypt {
            let output = prefix + ".p7m"
            scratch.append(output)
            try CMS.encrypt(content: content, recipients: credentials.partnerCertificates, cipher: cipher, output: output)
            encrypted = output
            security.encrypted = cipher
        }
        let written = try spool.writeOutgoing(name: name) { write in
            try (MessageComposer.headerBytes(header + [("MIME-Version", "1.0")])).withUnsafeBytes(write)
            if let encrypted {
                let smimeType = cipher.hasSuffix("gcm") ? "authEnveloped-data" : "enveloped-data"
                try MessageComposer.encryptedEntityHeader(smimeType: smimeType).withUnsafeBytes(write)
                try MessageComposer.writeBase64(file: encrypted, write: write)
            } else {
                try MessageComposer.writeFile(content, write: write)
            }
        }
        return Written(written: written, security: security, fileSize: fileSize, fileSHA256: hexString(hasher.finalize()))
    }
}

public enum OutboundTransfer {
    /// The site's S/MIME keys, checked for what sending needs: our key to sign, the partner's
    /// certificates to encrypt for.
    static func credentials(site: RemoteSite, sign: Bool, encrypt: Bool) throws -> SMIMECredentials {
        guard let settings = site.smime else {
            throw Failure.smime(site: site.name, "signing or encrypting needs an smime: block (key, certificate, partner_certificates)")
        }
        let credentials: SMIMECredentials
        do {
            credentials = try SMIMECredentials.load(settings, site: site.name)
        } catch {
            throw Failure.smime(site: site.name, "\(error)")
        }
        if sign, credentials.identity == nil { throw Failure.smime(site: site.name, "signing needs smime key and certificate (or pkcs12)") }
        if encrypt, credentials.partnerCertificates.isEmpty {
            throw Failure.smime(site: site.name, "encrypting needs smime partner_certificates (the partner's certificate)")
        }
        return credentials
    }

    public enum Failure: Error, CustomStringConvertible {
        case noSMTP(site: String)
        case noFromAddress(site: String)
        case unreadable(String)
        case smime(site: String, String)

        public var description: String {
            switch self {
            case .noSMTP(let site): "site \(site) has no smtp: settings; add host, port, security and from"
            case .noFromAddress(let site): "site \(site) has no smtp: from: address to send as"
            case .unreadable(let path): "cannot read \(path)"
            case .smime(let site, let problem): "site \(site): \(problem)"
            }
        }
    }

    /// - Parameters:
    ///   - sign: S/MIME-sign the message (nil: the site's `smime.sign`).
    ///   - encrypt: S/MIME-encrypt it for the partner's certificates (nil: `smime.encrypt`).
    public static func queue(
        file path: String, to recipients: [MailAddress], site: RemoteSite, application: String?, subject: String?,
        sign: Bool? = nil, encrypt: Bool? = nil, spool: Spool, catalog: any Catalog, now: Date = Date()
    ) async throws -> TransferRecord {
        guard let smtp = site.smtp else { throw Failure.noSMTP(site: site.name) }
        guard let fromText = smtp.from, let from = try? MailAddress(fromText) else { throw Failure.noFromAddress(site: site.name) }
        guard FileManager.default.isReadableFile(atPath: path) else { throw Failure.unreadable(path) }
        let signing = sign ?? site.smime?.sign ?? false
        let encrypting = encrypt ?? site.smime?.encrypt ?? false
        let credentials = signing || encrypting ? try Self.credentials(site: site, sign: signing, encrypt: encrypting) : nil
        let id = TransferRecord.newID(at: now)
        let domain = from.address.split(separator: "@").last.map(String.init) ?? "gatepost.invalid"
        let messageID = "\(id)@\(domain)"
        let fileName = SafeFileName.make((path as NSString).lastPathComponent)
        let subjectText = subject ?? "File \(fileName)"
        var header: MessageComposer.Fields = [
            ("From", from.address),
            ("To", recipients.map(\.address).joined(separator: ", ")),
            ("Subject", OutgoingHeader.unstructured(subjectText)),
            ("Date", OutgoingHeader.date(now)),
            ("Message-ID", "<\(messageID)>"),
            ("Disposition-Notification-To", from.address),
        ]
        // A signed receipt is asked for when the receipt can be verified (the partner's
        // certificates) and its MIC compared with one computed here (signed or encrypted).
        let digest = site.smime?.digest ?? .sha256
        let asksSignedReceipt = credentials.map { !$0.partnerCertificates.isEmpty } ?? false
        if asksSignedReceipt {
            header.append(("Disposition-Notification-Options", "signed-receipt-protocol=optional, pkcs7-signature; signed-receipt-micalg=optional, \(digest.rawValue)"))
        }
        let text = "Gatepost sends \(fileName)" + (application.map { " for \($0)" } ?? "") + ".\r\nPlease acknowledge receipt.\r\n"
        // Size and SHA-256 of exactly the bytes that went into the message.
        var hasher = SHA256()
        var size: Int64 = 0
        let fileData: (Data) -> Void = { data in
            hasher.update(data: data)
            size += Int64(data.count)
        }
        var security: MessageSecurity?
        let written: (path: String, size: Int64, sha256: String)
        var sha256: String
        if let credentials {
            // Signing and encrypting read and write the whole file: on a thread of its own.
            let secured = SecuredMessage(
                header: header, text: text, path: path, fileName: fileName, prefix: spool.temporaryPrefix(id: id),
                credentials: credentials, sign: signing, encrypt: encrypting, digest: digest,
                cipher: site.smime?.cipher ?? "aes-256-cbc", asksSignedReceipt: asksSignedReceipt
            )
            let composed = try await offloaded { [spool] in try secured.write(into: spool, name: id + ".eml") }
            (written, security, size, sha256) = (composed.written, composed.security, composed.fileSize, composed.fileSHA256)
        } else {
            written = try spool.writeOutgoing(name: id + ".eml") { write in
                try MessageComposer.writeFileMessage(
                    header: header, text: text, filePath: path, fileName: fileName, fileData: fileData, write: write
                )
            }
            sha256 = hexString(hasher.finalize())
        }
        let record = TransferRecord(
            id: id, direction: .outbound, type: .xfer, fileName: fileName, site: site.name, application: application,
            state: .queued, messageId: messageID, sender: from.address, recipients: recipients.map(\.address),
            subject: subjectText, size: size, sha256: sha256, path: written.path, receivedAt: now, ack: .requested,
            security: security
        )
        let entry = OutboxEntry(
            id: id, kind: .file, transferId: id, site: site.name, mailFrom: from.address,
            recipients: recipients.map(\.address), path: written.path, messageId: messageID, nextAttempt: now, createdAt: now
        )
        do {
            try await catalog.commitOutbound(record, message: entry)
        } catch {
            unlink(written.path)
            throw error
        }
        return record
    }
}
