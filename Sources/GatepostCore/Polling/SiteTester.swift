import Foundation
import GatepostPOP3
import GatepostSMTP
import Logging

/// `gatepost site test SITE`: each step of a connection, with pass or fail and the reason;
/// never retrieves or deletes anything. (The configuration "Test" button of an MFT console.)
public enum SiteTester {
    public struct Step: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    /// `local`: where the site's applications deliver; each of their folders is checked too.
    public static func run(_ site: RemoteSite, local: LocalSite? = nil, logger: Logger) async -> [Step] {
        var steps: [Step] = []
        for reference in site.applicationReferences {
            guard let application = local?.application(named: reference.name),
                  !steps.contains(where: { $0.name == "delivery \(application.name)" }) else { continue }
            let problem = DeliveryFolders.problem(application.folder)
            steps.append(Step(name: "delivery \(application.name)", passed: problem == nil, detail: problem ?? "\(application.folder) takes files"))
        }
        let configuration: POP3ConnectionConfiguration
        do {
            configuration = try site.pop3Configuration()
        } catch {
            return [Step(name: "tls settings", passed: false, detail: "\(error)")]
        }
        let target = "\(site.pop3.host):\(site.pop3.port) (\(site.pop3.security.rawValue))"
        var phase = "connect"
        do {
            try await POP3Client.withSession(configuration, logger: logger) { session in
                steps.append(Step(name: "connect", passed: true, detail: target))
                if let tls = await session.tlsSummary() {
                    steps.append(Step(name: "tls", passed: true, detail: describe(tls)))
                }
                steps.append(Step(name: "greeting", passed: true, detail: session.greeting?.text ?? ""))
                phase = "capabilities"
                let capabilities = try await session.loadCapabilities()
                steps.append(Step(name: "capabilities", passed: true, detail: capabilities.lines.isEmpty ? "(no CAPA)" : capabilities.lines.joined(separator: " ")))
                if site.pop3.security == .starttls {
                    phase = "starttls"
                    guard capabilities.supportsSTLS || capabilities.lines.isEmpty else {
                        throw POP3Error.notSupported("STLS, which the site requires (security: starttls)")
                    }
                    try await session.startTLS()
                    if let tls = await session.tlsSummary() {
                        steps.append(Step(name: "starttls", passed: true, detail: describe(tls)))
                    }
                }
                phase = "login"
                try await SiteSessionSetup.authenticate(session, site: site)
                steps.append(Step(name: "login", passed: true, detail: "as \(site.pop3.user)"))
                phase = "mailbox"
                let (count, size) = try await session.stat()
                steps.append(Step(name: "mailbox", passed: true, detail: "\(count) messages, \(size) bytes"))
                try await session.quit()
            }
        } catch {
            steps.append(Step(name: phase, passed: false, detail: phase == "connect" ? "\(target): \(error)" : "\(error)"))
        }
        if let smtp = site.smtp {
            steps.append(await testSMTP(smtp, logger: logger))
        }
        return steps
    }

    /// Connect, TLS, EHLO and AUTH to the site's SMTP server, as the outbox would; sends nothing.
    static func testSMTP(_ smtp: RemoteSite.SMTP, logger: Logger) async -> Step {
        let target = "\(smtp.host):\(smtp.port) (\(smtp.security.rawValue))"
        do {
            let detail = try await smtp.withSession(logger: logger) { session in
                var text = "\(target), \(session.isEncrypted ? "encrypted" : "NOT encrypted")"
                text += session.isAuthenticated ? ", logged in as \(smtp.user ?? "-")" : ", no login"
                if let size = session.capabilities.maximumMessageSize { text += ", SIZE \(size)" }
                if session.capabilities.supportsPipelining { text += ", PIPELINING" }
                return text
            }
            return Step(name: "smtp", passed: true, detail: detail)
        } catch {
            return Step(name: "smtp", passed: false, detail: "\(target): \(error)")
        }
    }

    static func describe(_ tls: POP3TLSSummary) -> String {
        let expiry = Date(timeIntervalSince1970: TimeInterval(tls.notValidAfter))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        var text = "certificate \(tls.subject)"
        if let issuer = tls.issuer { text += ", issued by \(issuer)" }
        text += ", valid until \(formatter.string(from: expiry))"
        if let version = tls.version { text += ", \(version)" }
        return text
    }
}
