import Foundation
import GatepostCore
#if canImport(Glibc)
import Glibc
#endif

/// A real SMTP server for integration tests: a private Postfix on 127.0.0.1 that hands mail for
/// `<user>@gatepost.test` to a test Dovecot over LMTP (scripts/peers/start-smtp.sh).
public final class SMTPPeer: Sendable {
    public struct Mailbox: Decodable, Sendable {
        public var popUser: String
        public var maildirNew: String
    }

    public struct Info: Decodable, Sendable {
        public var pid: Int32
        public var host: String
        /// Plain ESMTP with STARTTLS.
        public var port: Int
        /// Implicit TLS.
        public var tlsPort: Int
        public var caFile: String
        public var authUser: String
        public var authPassword: String
        public var domain: String
        public var mailboxes: [String: Mailbox]
        public var queueCommand: [String]?
    }

    public let directory: String
    public let info: Info

    /// Starts Postfix; a start that fails is tried once more (on a loaded machine running
    /// the whole suite, a master has been seen to exit without a word; the error says how).
    public static func start(for dovecot: DovecotPeer) async throws -> SMTPPeer {
        do {
            return try await offloaded { try SMTPPeer(dovecot: dovecot) }
        } catch {
            FileHandle.standardError.write(Data("SMTPPeer: first start failed, trying again: \(error)\n".utf8))
            return try await offloaded { try SMTPPeer(dovecot: dovecot) }
        }
    }

    private init(dovecot: DovecotPeer) throws {
        let directory = DovecotPeer.peerFolder("smtp")
        self.directory = directory
        let output = try DovecotPeer.run(
            dovecot.projectRoot + "/scripts/peers/start-smtp.sh",
            [directory, "--dovecot", dovecot.directory, "--stop-with", String(ProcessInfo.processInfo.processIdentifier)]
        )
        guard let line = output.split(separator: "\n").last else {
            throw DovecotPeer.PeerError.scriptFailed("start-smtp.sh", status: 0, output: "no JSON line")
        }
        info = try JSONDecoder().decode(Info.self, from: Data(line.utf8))
    }

    /// The settings of an `smtp:` block (flow style, one line) sending as `user` over implicit
    /// TLS, trusting the test CA: a site's, or an alert channel's.
    public func smtpSettings(user: String, password: String) -> String {
        "{host: 127.0.0.1, port: \(info.tlsPort), security: tls, from: \(user)@\(info.domain), user: \(user), password: \(password), tls: {ca_file: \(info.caFile)}}"
    }

    /// Stops Postfix (its master takes the children down) and removes its folder, off the pool.
    public func stop() {
        DovecotPeer.stop(pid: info.pid, removing: directory)
    }
}
