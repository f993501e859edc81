import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostConsole
import GatepostCore
import Logging

extension OutputFormat: ExpressibleByArgument {}
extension TransferRecord.Kind: ExpressibleByArgument {}
extension TransferRecord.State: ExpressibleByArgument {}
extension TransferRecord.Direction: ExpressibleByArgument {}

struct CatalogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "Inspect transfer records.",
        subcommands: [List.self, Show.self, Retry.self, Purge.self, Backup.self, Migrate.self, ForgetNode.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List transfers, newest first.",
            discussion: "Dates are ISO 8601: 2026-11-27 (midnight UTC), 2026-11-27T17:40Z, 2026-11-27 17:40:05+01:00. Patterns are globs (*, ?, [...]) or, without one, a substring; case-insensitive."
        )

        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this site.") var site: String?
        @Option(help: "Only this type: XFER, MSG, EERP, PROBE, or RECOVER and DUPLICATE (messages kept whole).") var type: ListedType?
        @Option(help: "Only this state: \(TransferRecord.State.allCases.map(\.rawValue).joined(separator: ", ")).") var state: TransferRecord.State?
        @Option(help: "Only this direction: in or out.") var direction: TransferRecord.Direction?
        @Option(help: "Only these file names (glob or substring).") var fileName: String?
        @Option(help: "Only these senders (glob or substring).") var sender: String?
        @Option(help: "Only these subjects (glob or substring).") var subject: String?
        @Option(help: "Only transfers received at or after this time.") var since: String?
        @Option(help: "Only transfers received before this time.") var until: String?
        @Option(help: "At most this many.") var limit: Int?
        @Option(help: "Skip this many first.") var offset: Int = 0
        @Flag(help: "Oldest first.") var oldestFirst = false
        @Option(help: "table, json or csv.") var format: ListFormat = .table

        enum ListedType: String, ExpressibleByArgument, CaseIterable {
            case xfer = "XFER", msg = "MSG", eerp = "EERP", probe = "PROBE", recover = "RECOVER", duplicate = "DUPLICATE"
            init?(argument: String) { self.init(rawValue: argument.uppercased()) }
        }

        enum ListFormat: String, ExpressibleByArgument, CaseIterable {
            case table, json, csv
        }

        func run() async throws {
            let since = try self.since.map { try Self.date($0, option: "--since") }
            let until = try self.until.map { try Self.date($0, option: "--until") }
            guard limit.map({ $0 > 0 }) ?? true, offset >= 0 else {
                throw fail(.configuration("--limit must be above 0 and --offset at least 0"))
            }
            let catalog = try await openCatalog(options)
            var filter = TransferFilter(
                site: site, state: state, since: since, before: until, direction: direction,
                fileName: fileName.map(TextPattern.init), sender: sender.map(TextPattern.init), subject: subject.map(TextPattern.init),
                newestFirst: !oldestFirst
            )
            if let type { _ = filter.narrow(toListedType: type.rawValue) }
            if let limit { filter.limit = offset + limit }
            let records = Array(try await catalog.transfers(filter).dropFirst(offset))
            switch format {
            case .table: Terminal.block(Formatting.transferTable(records))
            case .json: print(try Formatting.json(records))
            case .csv: print(Formatting.transferCSV(records), terminator: "")
            }
        }

        static func date(_ text: String, option: String) throws -> Date {
            guard let date = StrictDate.parse(text) else {
                throw fail(.configuration("\(option): `\(text)` is not a date (ISO 8601: 2026-11-27, 2026-11-27T17:40Z or 2026-11-27T17:40:05+01:00)"))
            }
            return date
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one transfer.")

        @OptionGroup var options: GlobalOptions
        @Argument(help: "The transfer id.") var id: String
        @Option(help: "table or json.") var format: OutputFormat = .table

        func run() async throws {
            let catalog = try await openCatalog(options)
            guard let record = try await catalog.transfer(id: id) else {
                throw fail(CommandFailure(description: "no transfer with id \(id)", exitCode: 1))
            }
            switch format {
            case .json:
                print(try Formatting.json(record))
            case .table:
                let fields: [(String, String?)] = [
                    ("id", record.id), ("direction", record.direction.rawValue), ("type", record.type.rawValue),
                    ("fileName", record.fileName), ("site", record.site), ("application", record.application),
                    ("state", record.state.rawValue), ("messageId", record.messageId), ("uidl", record.uidl),
                    ("sender", record.sender), ("recipients", record.recipients.joined(separator: ", ")),
                    ("subject", record.subject), ("size", String(record.size)), ("sha256", record.sha256),
                    ("path", record.path), ("receivedAt", Formatting.timestamp(record.receivedAt)),
                    ("ack", record.ack.rawValue), ("ackMessageId", record.ackMessageId),
                    ("originalMessageId", record.originalMessageId), ("originalEnvelopeId", record.originalEnvelopeId),
                    ("disposition", record.disposition), ("deliveredPath", record.deliveredPath), ("error", record.error),
                    ("classification", record.classification), ("signature", record.signature),
                    ("messageSha256", record.messageSha256),
                ] + (record.security?.lines ?? []).map { ($0.label, $0.value) }
                // Each recipient's report line, and each outgoing message of this transfer.
                let reports: [(String, String?)] = record.recipientReports.map { report in
                    let parts = [report.action, report.status, report.disposition].compactMap { $0 }
                    return ("report", "\(report.recipient): \(parts.joined(separator: " "))")
                }
                let outgoing: [(String, String?)] = try await catalog.outbox(transferId: record.id).map { entry in
                    var line = "\(entry.kind.rawValue) <\(entry.messageId)> to \(entry.recipients.joined(separator: ", ")): \(entry.state.rawValue)"
                    line += ", \(entry.attempts) attempt\(entry.attempts == 1 ? "" : "s")"
                    if entry.state == .pending { line += ", next at \(Formatting.timestamp(entry.nextAttempt))" }
                    if let error = entry.lastError { line += ": \(error)" }
                    return ("outbox", line)
                }
                Terminal.block(TextTable.fields((fields + reports + outgoing).map { ($0.0, $0.1 ?? "-") }).render())
                if let text = record.messageText {
                    // A partner's words: no escape sequence or direction override reaches the
                    // operator's terminal. Line ends become plain newlines.
                    Terminal.block("\nmessage text:\n" + text)
                }
            }
        }
    }
}

extension CatalogCommand {
    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Try a transfer again: its failed outgoing messages (a file, an acknowledgment) are sent again, and a failed or unrouted delivery is routed and delivered again."
        )

        @OptionGroup var options: GlobalOptions
        @Argument(help: "The transfer id.") var id: String

        func run() async throws {
            options.bootstrapLogging()
            // One process delivers at a time: while a daemon holds the spool, it does the retry.
            let (spool, catalog): (Spool, any Catalog)
            do {
                (spool, catalog) = try await Runtime.openSpool(options)
            } catch let failure as CommandFailure {
                throw fail(failure)
            }
            let lock: SpoolLock
            do {
                lock = try SpoolLock(spool: spool)
            } catch is SpoolLock.Busy {
                guard let daemon = DaemonClient.connect(spool: spool) else {
                    throw fail(CommandFailure(description: "another gatepost process holds this spool and does not answer on its control socket: try again when it is done", exitCode: 1))
                }
                let done: OperatorOutcome
                do {
                    done = try await daemon.retry(id)
                } catch {
                    throw fail(CommandFailure(description: "\(error)", exitCode: 1))
                }
                Terminal.line("a daemon holds this spool: it retried \(id): \(done.result)")
                if done.failed == true { throw ExitCode(1) }
                return
            } catch {
                throw fail(CommandFailure(description: "\(error)", exitCode: 1))
            }
            defer { withExtendedLifetime(lock) {} }
            let commands = OperatorCommands(directory: try Runtime.loadSites(options), catalog: catalog, logger: Logger(label: "gatepost.retry"))
            let outcomes: [OperatorCommands.RetryOutcome]
            do {
                outcomes = try await commands.retry(id, actor: Runtime.commandLineActor)
            } catch let failure as OperatorCommands.Failure {
                if case .noApplications = failure {
                    throw fail(.configuration("nothing to deliver to: \(options.sites)/local.yaml defines no applications"))
                }
                throw fail(CommandFailure(description: failure.description, exitCode: 1))
            }
            var failed = false
            for outcome in outcomes {
                switch outcome {
                case .resent(let summary, let record):
                    if let line = PollCommand.describe(summary, site: record.site) { Terminal.line(line) }
                    Terminal.line("\(id): \(record.direction == .outbound ? record.state.rawValue : "acknowledgment \(record.ack.rawValue)")")
                    failed = failed || summary.failed > 0
                case .delivered(let delivery):
                    Terminal.line(PollCommand.describe(delivery))
                    failed = failed || delivery.state == .failed
                }
            }
            if failed { throw ExitCode(1) }
        }
    }
}

extension CatalogCommand {
    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the spool files of finished transfers older than a cutoff; the records stay, marked purged.",
            discussion: """
            Finished: delivered, failed, acknowledged, sent or overdue, with no outgoing message pending. Only \
            files in the spool go (in/ and out/); files delivered to applications are not touched.
            """
        )

        @OptionGroup var options: GlobalOptions
        @Option(name: .long, help: ArgumentHelp("Age of the transfers to purge: 30d (days), 12h (hours), 90m (minutes), 45s (seconds).", valueName: "age")) var olderThan: String?
        @Option(help: "Or: transfers received before this time (ISO 8601, or YYYY-MM-DD).") var before: String?
        @Option(help: "Only this site.") var site: String?
        @Flag(help: "Say what would be removed, remove nothing.") var dryRun = false

        func run() async throws {
            options.bootstrapLogging()
            let cutoff: Date
            switch (olderThan, before) {
            case (let age?, nil):
                // The site files' and --lease-time's durations: more than zero (an age of 0
                // would purge every finished transfer; --before says that on purpose).
                guard let age = DurationText.parse(age) else {
                    throw fail(.configuration("--older-than must be a duration above zero such as 30d, 12h or 90m"))
                }
                cutoff = Date().addingTimeInterval(-age.timeInterval)
            case (nil, let date?):
                cutoff = try List.date(date, option: "--before")
            default:
                throw fail(.configuration("give exactly one of --older-than AGE and --before DATE"))
            }
            let (spool, catalog): (Spool, any Catalog)
            do {
                (spool, catalog) = try await Runtime.openSpool(options)
            } catch let failure as CommandFailure {
                throw fail(failure)
            }
            let summary = try await SpoolPurge(spool: spool, catalog: catalog)
                .run(before: cutoff, site: site, dryRun: dryRun)
            if dryRun {
                for transfer in summary.purged {
                    Terminal.line("  \(transfer.id): \(transfer.files) files, \(Formatting.bytes(transfer.bytes))")
                }
            }
            Terminal.line(
                "\(dryRun ? "would purge" : "purged") \(summary.transfers) transfers received before \(Formatting.timestamp(cutoff)): "
                    + "\(summary.files) files, \(Formatting.bytes(summary.bytes))"
            )
        }
    }
}

extension CatalogCommand {
    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the catalog to FILE, consistently, while the daemon runs (SQLite's online backup).",
            discussion: "To restore: stop the daemon, remove spool/catalog.sqlite and its -wal and -shm files, copy FILE to spool/catalog.sqlite, start again."
        )
        @OptionGroup var options: GlobalOptions
        @Argument(help: ArgumentHelp("Where the copy goes; it must not exist yet.", valueName: "file")) var file: String

        func run() async throws {
            options.bootstrapLogging()
            guard let catalog = try await openCatalog(options) as? SQLiteCatalog else {
                throw fail(CommandFailure(description: "catalog backup copies a SQLite catalog; back up a PostgreSQL one with pg_dump", exitCode: 2))
            }
            do {
                try catalog.backup(to: file)
            } catch {
                throw fail(CommandFailure(description: "cannot back up the catalog to \(file): \(error)", exitCode: 1))
            }
            let size = ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int64) ?? 0
            Terminal.line("catalog backed up to \(file) (\(Formatting.bytes(size)))")
        }
    }
}

extension CatalogCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy this spool's SQLite catalog into an empty PostgreSQL one (records, UIDLs, site states, outbox, deliveries, audit trail, alerts, probes): nothing is fetched again.",
            discussion: "Stop the daemon first. Afterwards run every command with --catalog URL (or GATEPOST_CATALOG) and this spool; the records name --node as the holder of their files, so start this node's daemon with the same --node."
        )
        @OptionGroup var options: GlobalOptions
        @Option(help: ArgumentHelp("The PostgreSQL catalog to fill: postgres://USER:PASSWORD@HOST:PORT/DATABASE (its tables are made if need be; it must hold no transfer yet).", valueName: "url"))
        var to: String

        func run() async throws {
            options.bootstrapLogging()
            let spool: Spool
            let source: SQLiteCatalog
            do {
                spool = try Spool(root: options.absoluteSpool)
                guard !SQLiteCatalog.isNew(at: spool.catalogPath) else {
                    throw CommandFailure(description: "\(spool.catalogPath) holds no catalog to migrate", exitCode: 2)
                }
                source = try SQLiteCatalog(path: spool.catalogPath)
            } catch let failure as CommandFailure {
                throw fail(failure)
            } catch {
                throw fail(CommandFailure(description: "\(error)", exitCode: 1))
            }
            // Nothing may be recorded while the copy runs: the daemon must be stopped.
            let lock: SpoolLock
            do {
                lock = try SpoolLock(spool: spool)
            } catch {
                throw fail(CommandFailure(description: "a gatepost daemon is using this spool: stop it before migrating its catalog", exitCode: 1))
            }
            let target: any Catalog
            do {
                target = try await CatalogLocation.open(to)
            } catch let failure as CommandFailure {
                throw fail(failure)
            } catch {
                throw fail(CommandFailure(description: "\(error)", exitCode: 1))
            }
            guard let importer = target as? any Catalog & CatalogImporter else {
                throw fail(CommandFailure(description: "the catalog at --to cannot take a migration", exitCode: 2))
            }
            do {
                let counts = try await CatalogCopy(node: options.nodeName).copy(from: source, to: importer)
                Terminal.line("copied \(counts) into \(target); run with --catalog from now on")
            } catch {
                throw fail(CommandFailure(description: "migration failed (the SQLite catalog is unchanged): \(error)", exitCode: 1))
            }
            withExtendedLifetime(lock) {}
        }
    }
}

extension CatalogCommand {
    struct ForgetNode: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "forget-node",
            abstract: "Remove a node that is gone for good from the nodes sharing the catalog (its node-gone alert resolves); a live node is refused.",
            discussion: "A node stopped with SIGTERM leaves by itself. The records it received keep naming it: their files are in its spool."
        )
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The node's name (gatepost status lists the nodes).") var name: String

        func run() async throws {
            options.bootstrapLogging()
            let catalog = try await openCatalog(options)
            let commands = OperatorCommands(directory: SiteDirectory(sites: [], errors: [], local: nil), catalog: catalog, logger: Logger(label: "gatepost"))
            do {
                try await commands.forgetNode(name, actor: Runtime.commandLineActor)
            } catch let failure as OperatorCommands.Failure {
                throw fail(CommandFailure(description: failure.description, exitCode: 1))
            } catch {
                throw fail(CommandFailure(description: "\(error)", exitCode: 1))
            }
            Terminal.line("node \(name) forgotten; the records it received still name it")
        }
    }
}

/// Opens the catalog for reading; a spool that does not exist yet is created empty.
func openCatalog(_ options: GlobalOptions) async throws -> any Catalog {
    do {
        return try await Runtime.openSpool(options).1
    } catch let failure as CommandFailure {
        throw fail(failure)
    }
}
