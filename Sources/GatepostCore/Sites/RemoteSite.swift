import GatepostMIME
import Foundation
import GatepostCatalog
import GatepostPOP3
import GatepostSMTP

/// A secret from a site file. It prints as `****` everywhere, so it cannot leak into a log line,
/// an error or `site show` by accident; only the connection code reads ``value``.
///
/// A secret that cannot be had (its environment variable is not set, its file cannot be read)
/// does not make the site unusable: the site loads, every command that does not connect works
/// (an operator must be able to disable a partner at 3 a.m. without its password in the shell),
/// and the secret is asked for only when connecting, with the reason it is missing.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    enum Source: Sendable, Hashable {
        case value(String)
        /// Read when needed: `password_file`.
        case file(String)
        /// Why there is none, naming the file, line and field.
        case unavailable(String)
    }

    let source: Source
    /// When the partner or the identity provider said it stops working (`<key>_expires:`): an
    /// `expiring` alert comes before that day.
    public var expires: Date?

    public init(_ value: String) {
        source = .value(value)
    }

    init(file path: String) {
        source = .file(path)
    }

    init(unavailable reason: String) {
        source = .unavailable(reason)
    }

    /// Why the secret cannot be had right now, or nil when it can.
    public var problem: String? {
        do {
            _ = try resolve()
            return nil
        } catch {
            return error.description
        }
    }

    /// The secret itself, for the moment of connecting.
    public func resolve() throws(SecretUnavailable) -> String {
        switch source {
        case .value(let value):
            return value
        case .unavailable(let reason):
            throw SecretUnavailable(description: reason)
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SecretUnavailable(description: "cannot read the secret file \(path)")
            }
            var text = String(decoding: data, as: UTF8.self)
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            return text
        }
    }

    public var description: String { "****" }
    public var debugDescription: String { "****" }
}

/// A secret a site names but that cannot be had: what to fix, and where.
public struct SecretUnavailable: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// One trading partner's mailbox: how to reach it, how often, and what to do with what arrives.
/// Loaded from `sites/NAME.yaml` (or a BTP MAIL destination JSON) by ``SiteLoader``.
public struct RemoteSite: Sendable, Hashable {
    public struct POP3: Sendable, Hashable {
        public var host: String
        public var port: Int
        public var security: POP3ConnectionConfiguration.Security
        public var user: String
        public var password: Secret?
        /// The mailbox's mail address (`pop3.address`): the Final-Recipient of the MDNs this
        /// site sends. Default: the user name when it is an address, else `smtp.from`.
        public var address: String? = nil
        /// The ways to log in, in order; empty: the default order (``POP3AuthMechanism/defaultPreference(connectionIsEncrypted:)``).
        public var auth: [POP3AuthMechanism]
        /// Sending a password over an unencrypted connection needs this explicit opt-in.
        public var allowPlaintextPassword: Bool
        public var tls: TLS
        /// OAuth2 client credentials for XOAUTH2 / OAUTHBEARER.
        public var oauth2: OAuth2Settings? = nil
        public var connectTimeout: Duration
        public var readTimeout: Duration
    }

    public struct TLS: Sendable, Hashable {
        public var caFile: String?
        public var clientCertificate: String?
        public var clientKey: String?
        /// Certificate and host name verification. Off only when a site says `verify: false`.
        public var verify: Bool
    }

    public struct Poll: Sendable, Hashable {
        public var interval: Duration
        public var deleteAfterRetrieve: Bool
        /// Larger messages (by LIST) are left on the server and reported.
        public var maxMessageSize: Int64
        /// What the MIME parser may take of one message; past a limit the message is kept
        /// whole as RECOVER (the site file's `limits:`).
        public var limits: MIMELimits = .default
        /// Messages made durable and committed together (one journal flush and one catalog
        /// transaction for all); their DELEs follow the commit. Smaller batches refetch less
        /// after a crash, larger ones go faster.
        public var commitBatch: Int = 32
        /// Polls in a row that cannot retrieve a message before it is reported as stuck.
        public var stuckAfter: Int = 3
    }

    public struct SMTP: Sendable, Hashable {
        public var host: String
        public var port: Int
        public var security: POP3ConnectionConfiguration.Security
        /// Our address toward this partner: From of acknowledgments and outbound files, and the
        /// Final-Recipient of our MDNs.
        public var from: String?
        public var user: String?
        public var password: Secret?
        public var tls: TLS = TLS(caFile: nil, clientCertificate: nil, clientKey: nil, verify: true)
        /// AUTH over a connection without TLS: only when the site says so.
        public var allowPlaintextPassword: Bool = false
        /// OAuth2 client credentials: AUTH XOAUTH2 with a token instead of the password.
        public var oauth2: OAuth2Settings? = nil
        /// Answer `Disposition-Notification-To` with an MDN (RFC 8098).
        public var acknowledgments: Bool = true
        /// RFC 8098 section 2.1: no automatic MDN when Return-Path and Disposition-Notification-To
        /// differ, unless the site trusts this partner's setup (`acknowledge_any_address: true`).
        public var acknowledgeAnyAddress: Bool = false
        /// How long the server may stay silent while a reply is due (`smtp.read_timeout`); the
        /// end of the data gets twice as long (RFC 5321 section 4.5.3.2 suggests 5 and 10 minutes).
        public var readTimeout: Duration = .seconds(300)
        /// How long after an outbound file was sent its acknowledgment (the partner's MDN) may
        /// take before the transfer is `overdue` (`smtp.ack_timeout`); nil: never.
        public var acknowledgmentTimeout: Duration? = nil
        /// Which delivery status notifications (RFC 3461) outbound files ask for, when the
        /// server offers DSN (`smtp.delivery_reports`).
        public var deliveryReports: DeliveryReports = .all
    }

    /// `smtp.delivery_reports`: `all` (delivered, failed and delayed: a file's transfer becomes
    /// `delivered` when every recipient's server has it), `failures` (failed and delayed only),
    /// or `none`.
    public enum DeliveryReports: String, Sendable, Hashable, CaseIterable {
        case all, failures, none

        var notify: [DeliveryStatusRequest.Notify] {
            switch self {
            case .all: [.success, .failure, .delay]
            case .failures: [.failure, .delay]
            case .none: []
            }
        }
    }

    /// A routing rule: every condition given must hold; the first matching route wins.
    public struct Route: Sendable, Hashable {
        public var type: TransferRecord.Kind?
        /// A shell glob over FILE_NAME, case-insensitive (`*.csv`, `RECOVER`).
        public var fileName: String?
        /// A shell glob over the sender's address, case-insensitive (`*@acme.example`).
        public var sender: String?
        /// A regular expression searched in the subject.
        public var subject: String?
        public var application: String
        /// Where `application` was written, for error messages.
        public var line: Int?
        public var field: String?

        public init(
            type: TransferRecord.Kind? = nil, fileName: String? = nil, sender: String? = nil, subject: String? = nil,
            application: String, line: Int? = nil, field: String? = nil
        ) {
            self.type = type
            self.fileName = fileName
            self.sender = sender
            self.subject = subject
            self.application = application
            self.line = line
            self.field = field
        }
    }

    public var name: String
    public var description: String?
    public var enabled: Bool
    public var pop3: POP3
    public var poll: Poll
    public var smtp: SMTP?
    /// `classify:`, the choices beyond the classification table.
    public var classification = ClassificationOptions()
    /// `expect:`, the files this partner sends on a schedule (an alert when one does not come).
    public var expectations: [ExpectedArrival] = []
    /// `probe:`, a message sent over `smtp` to the polled mailbox on a schedule.
    public var probe: ProbeSettings?
    /// `smime:`, S/MIME keys, trust and requirements (AS1).
    public var smime: SMIMESettings?

    /// A probe's schedule: one every `every`; missing when not back through a poll within
    /// `deadline`; sent to `to` (the mailbox this site polls).
    public struct ProbeSettings: Sendable, Hashable {
        public var every: Duration
        public var deadline: Duration
        public var to: String
    }
    /// The default application: the FILE_NAME of MSG transfers and the routing fallback.
    public var application: String?
    public var applicationLine: Int?
    public var routes: [Route]
    /// The file this site was read from, for error messages.
    public var sourceFile: String

    /// The secrets this site names that cannot be had right now, each with its reason: the
    /// site still loads, and polls fail with that reason until they are fixed.
    public var unavailableSecrets: [String] {
        let secrets: [Secret?] = [pop3.password, pop3.oauth2?.clientSecret, smtp?.password, smtp?.oauth2?.clientSecret, smime?.password]
        return secrets.compactMap { $0?.problem }
    }

    /// The secrets with a known expiry, by where they are in the site file.
    public var secretExpiries: [(field: String, expires: Date)] {
        let secrets: [(String, Secret?)] = [
            ("pop3.password", pop3.password), ("pop3.oauth2.client_secret", pop3.oauth2?.clientSecret),
            ("smtp.password", smtp?.password), ("smtp.oauth2.client_secret", smtp?.oauth2?.clientSecret),
            ("smime.password", smime?.password),
        ]
        return secrets.compactMap { field, secret in secret?.expires.map { (field, $0) } }
    }

    /// The client certificate files the site presents, by where they are in the site file.
    public var clientCertificateFiles: [(field: String, path: String)] {
        var smimeCertificate: String?
        if case .pem(_, let certificate) = smime?.key { smimeCertificate = certificate }
        let files: [(String, String?)] = [
            ("pop3.tls.client_certificate", pop3.tls.clientCertificate), ("smtp.tls.client_certificate", smtp?.tls.clientCertificate),
            ("smime.certificate", smimeCertificate),
        ]
        return files.compactMap { field, path in path.map { (field, $0) } }
    }

    /// Enabled, as the operator last said (`gatepost site enable|disable`), else as the file says.
    public func isEnabled(_ state: SiteState?) -> Bool {
        state?.enabled ?? enabled
    }

    /// Every application this site names, with where, for checking against the Local Site.
    var applicationReferences: [(name: String, line: Int?, field: String)] {
        var references = routes.map { ($0.application, $0.line, $0.field ?? "routes") }
        if let application { references.insert((application, applicationLine, "application"), at: 0) }
        return references
    }
}
