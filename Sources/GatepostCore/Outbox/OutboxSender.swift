import Crypto
import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostSMTP
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
        let mode: SMTPConnectionConfiguration.Security = switch security {
        case .tls: .tls
        case .starttls: .starttls
        case .none: .none
        }
        return SMTPConnectionConfiguration(
            host: host, port: port, security: mode, tls: configuration, allowInsecureAuth: allowPlaintextPassword,
            authMechanism: oauth2 == nil ? nil : .xoauth2
        )
    }

    /// The password, or with `oauth2:` a client-credentials token (cached until shortly before
    /// it expires); nil sends without AUTH.
    func credentials() async throws -> SMTPCredentials? {
        guard let user else { return nil }
        if let oauth2 {
            return SMTPCredentials(user: user, bearerToken: try await OAuth2TokenProvider.shared.token(for: oauth2))
        }
        guard let password else { return nil }
        return SMTPCredentials(user: user, password: password.value)
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

/// Delivers the outbox: every due entry goes to its site's SMTP server. A 2xx for at least one
/// recipient makes it sent; a temporary failure (4xx, a lost connection) is tried again later
/// with growing delays; a permanent one (5xx for every recipient, bad settings) fails it at once,
/// and so does the last attempt.
public struct OutboxSender: Sendable {
    public var sites: [String: RemoteSite]
    public var catalog: any Catalog
    public var logger: Logger
    public var retry = RetryPolicy(attempts: 10, baseDelay: .seconds(30), maxDelay: .seconds(3600))

    public init(sites: [RemoteSite], catalog: any Catalog, logger: Logger) {
        self.sites = Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.catalog = catalog
        self.logger = logger
    }

    public struct Summary: Sendable {
        public var sent = 0
        public var retrying = 0
        public var failed = 0
    }

    /// Sends what is due, of one site or all; one SMTP session per site.
    @discardableResult
    public func sendDue(site name: String? = nil, now: Date = Date()) async throws -> Summary {
        let due = try await catalog.dueOutbox(site: name, at: now)
        var summary = Summary()
        for (siteName, entries) in Dictionary(grouping: due, by: \.site).sorted(by: { $0.key < $1.key }) {
            guard let site = sites[siteName], let smtp = site.smtp else {
                for entry in entries {
                    try await fail(entry, error: "site \(siteName) has no smtp: settings", permanent: true, summary: &summary)
                }
                continue
            }
            await send(entries, site: site, smtp: smtp, summary: &summary)
        }
        return summary
    }

    private func send(_ entries: [OutboxEntry], site: RemoteSite, smtp: RemoteSite.SMTP, summary: inout Summary) async {
        var remaining = entries
        do {
            var logger = logger
            logger[metadataKey: "site"] = "\(site.name)"
            let outcomes = try await smtp.withSession(logger: logger) { session in
                var outcomes: [(OutboxEntry, Result<SMTPSendResult, SMTPError>)] = []
                for entry in entries {
                    let envelope = SMTPEnvelope(from: entry.mailFrom, recipients: entry.recipients)
                    do throws(SMTPError) {
                        outcomes.append((entry, .success(try await session.send(envelope: envelope, messageFileAt: entry.path))))
                    } catch {
                        outcomes.append((entry, .failure(error)))
                        if !Self.sessionContinues(after: error) { break }
                    }
                }
                return outcomes
            }
            for (entry, outcome) in outcomes {
                remaining.removeAll { $0.id == entry.id }
                switch outcome {
                case .success(let result):
                    try await catalog.outboxSent(entry, at: Date(), refused: result.refusedRecipients.map { (refused: SMTPRecipientResult) in refused.recipient })
                    summary.sent += 1
                    logger.info("sent", metadata: [
                        "site": "\(site.name)", "kind": "\(entry.kind.rawValue)", "messageId": "\(entry.messageId)",
                        "to": "\(result.acceptedRecipients.joined(separator: ","))",
                    ])
                case .failure(let error):
                    try await fail(entry, error: error.description, permanent: !error.isTransient, summary: &summary)
                }
            }
        } catch {
            // The session itself failed (connect, TLS, AUTH): every entry not yet answered waits.
            let transient = (error as? SMTPError)?.isTransient ?? true
            for entry in remaining {
                try? await fail(entry, error: "\(error)", permanent: !transient, summary: &summary)
            }
        }
    }

    /// After a refused message the session is still good for the next one; after a lost
    /// connection or a timeout it is not.
    static func sessionContinues(after error: SMTPError) -> Bool {
        if case .messageRefused = error { return true }
        return false
    }

    private func fail(_ entry: OutboxEntry, error: String, permanent: Bool, summary: inout Summary) async throws {
        let attempt = entry.attempts + 1
        if permanent || attempt >= retry.attempts {
            try await catalog.outboxFailed(entry, error: error, retryAt: nil)
            summary.failed += 1
            logger.error("not sent", metadata: ["site": "\(entry.site)", "messageId": "\(entry.messageId)", "error": "\(error)"])
        } else {
            var random = SystemRandomNumberGenerator()
            let delay = retry.delay(after: attempt, using: &random)
            let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
            try await catalog.outboxFailed(entry, error: error, retryAt: Date().addingTimeInterval(max(1, seconds)))
            summary.retrying += 1
            logger.warning("not sent yet; will retry", metadata: ["site": "\(entry.site)", "messageId": "\(entry.messageId)", "error": "\(error)"])
        }
    }
}

/// `gatepost send`: one file to a partner as multipart/mixed with a Disposition-Notification-To
/// request, recorded as an outbound transfer and queued in the outbox.
public enum OutboundTransfer {
    public enum Failure: Error, CustomStringConvertible {
        case noSMTP(site: String)
        case noFromAddress(site: String)
        case unreadable(String)

        public var description: String {
            switch self {
            case .noSMTP(let site): "site \(site) has no smtp: settings; add host, port, security and from"
            case .noFromAddress(let site): "site \(site) has no smtp: from: address to send as"
            case .unreadable(let path): "cannot read \(path)"
            }
        }
    }

    public static func queue(
        file path: String, to recipients: [MailAddress], site: RemoteSite, application: String?, subject: String?,
        spool: Spool, catalog: any Catalog, now: Date = Date()
    ) async throws -> TransferRecord {
        guard let smtp = site.smtp else { throw Failure.noSMTP(site: site.name) }
        guard let fromText = smtp.from, let from = try? MailAddress(fromText) else { throw Failure.noFromAddress(site: site.name) }
        let (size, sha256) = try hashFile(path)
        let id = TransferRecord.newID(at: now)
        let domain = from.address.split(separator: "@").last.map(String.init) ?? "gatepost.invalid"
        let messageID = "\(id)@\(domain)"
        let fileName = SafeFileName.make((path as NSString).lastPathComponent)
        let subjectText = subject ?? "File \(fileName)"
        let header: MessageComposer.Fields = [
            ("From", from.address),
            ("To", recipients.map(\.address).joined(separator: ", ")),
            ("Subject", OutgoingHeader.unstructured(subjectText)),
            ("Date", OutgoingHeader.date(now)),
            ("Message-ID", "<\(messageID)>"),
            ("Disposition-Notification-To", from.address),
        ]
        let text = "Gatepost sends \(fileName) (\(size) bytes, SHA-256 \(sha256))"
            + (application.map { " for \($0)" } ?? "") + ".\r\nPlease acknowledge receipt.\r\n"
        let written = try spool.writeOutgoing(name: id + ".eml") { write in
            try MessageComposer.writeFileMessage(header: header, text: text, filePath: path, fileName: fileName, write: write)
        }
        let record = TransferRecord(
            id: id, direction: .outbound, type: .xfer, fileName: fileName, site: site.name, application: application,
            state: .queued, messageId: messageID, sender: from.address, recipients: recipients.map(\.address),
            subject: subjectText, size: size, sha256: sha256, path: written.path, receivedAt: now, ack: .requested
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

    static func hashFile(_ path: String) throws -> (Int64, String) {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw Failure.unreadable(path) }
        defer { try? handle.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while true {
            let data = handle.readData(ofLength: 1 << 20)
            if data.isEmpty { break }
            hasher.update(data: data)
            size += Int64(data.count)
        }
        return (size, hexString(hasher.finalize()))
    }
}
