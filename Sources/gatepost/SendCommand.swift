import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostMIME
import Logging

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a file to a partner over the site's SMTP, asking for an acknowledgment (MDN).",
        discussion: """
        The file goes as multipart/mixed with one base64 attachment and a Disposition-Notification-To \
        request; it is recorded as an outbound transfer (direction out) and queued in the outbox in one \
        transaction, then sent at once. A temporary failure leaves it queued for the next poll or `run`. \
        The partner's MDN, when a poll retrieves it, marks the transfer acknowledged. With --sign and/or \
        --encrypt (S/MIME, the site's smime: block) a signed receipt is asked for, and only one signed by \
        the partner whose Received-Content-MIC matches what was sent acknowledges the transfer.
        """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "The site to send to.") var site: String
    @Argument(help: "The file to send.") var file: String
    @Option(name: .long, help: ArgumentHelp("Recipient address (repeat for several).", valueName: "address")) var to: [String]
    @Option(name: .long, help: "The application the file comes from (recorded).") var application: String?
    @Option(name: .long, help: "Subject (default: File NAME).") var subject: String?
    @Flag(inversion: .prefixedNo, help: "S/MIME-sign with the site's smime key (default: the site's smime.sign).") var sign: Bool?
    @Flag(inversion: .prefixedNo, help: "S/MIME-encrypt for the site's smime partner_certificates (default: smime.encrypt).") var encrypt: Bool?

    func run() async throws {
        options.bootstrapLogging()
        let directory = try Runtime.loadSites(options)
        guard let remote = directory.sites.first(where: { $0.name == site }) else {
            throw fail(.configuration("no site named \(site) in \(options.sites)"))
        }
        var recipients: [MailAddress] = []
        for address in to {
            do {
                recipients.append(try MailAddress(address))
            } catch {
                throw fail(.configuration(error.description))
            }
        }
        guard !recipients.isEmpty else { throw fail(.configuration("name at least one recipient with --to")) }
        guard FileManager.default.isReadableFile(atPath: file) else { throw fail(.configuration("cannot read \(file)")) }
        let (spool, catalog): (Spool, any Catalog)
        do {
            (spool, catalog) = try await Runtime.openSpool(options)
        } catch let failure as CommandFailure {
            throw fail(failure)
        }
        let record: TransferRecord
        do {
            record = try await OutboundTransfer.queue(
                file: file, to: recipients, site: remote, application: application, subject: subject, sign: sign, encrypt: encrypt,
                spool: spool, catalog: catalog
            )
        } catch let failure as OutboundTransfer.Failure {
            throw fail(.configuration(failure.description))
        } catch {
            throw fail(CommandFailure(description: "cannot queue \(file): \(error)", exitCode: 1))
        }
        Terminal.line("\(record.id) queued: \(record.fileName ?? "-") to \(recipients.map(\.address).joined(separator: ", ")) <\(record.messageId ?? "")>")
        let sender = OutboxSender(sites: directory.sites, catalog: catalog, logger: Logger(label: "gatepost.outbox"))
        let summary = try await sender.sendDue(site: remote.name)
        let state = try await catalog.transfer(id: record.id)
        Terminal.line("\(record.id) \(state?.state.rawValue ?? "unknown")\(state?.error.map { ": \($0)" } ?? "")")
        if let line = PollCommand.describe(summary, site: remote.name) { Terminal.line(line) }
        // Still queued: say why and when it goes again.
        for entry in try await catalog.outbox(transferId: record.id) where entry.state == .pending {
            Terminal.line("\(record.id) waiting: \(entry.lastError ?? "not sent yet"); next attempt \(Formatting.timestamp(entry.nextAttempt))")
        }
        if state?.state == .failed { throw ExitCode(1) }
    }
}
