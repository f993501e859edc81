import ArgumentParser
import Foundation
import GatepostCore
import Logging

@main
struct Gatepost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatepost",
        abstract: "Managed file transfer over POP3/SMTP: poll partners' mailboxes into a spool catalog.",
        version: GatepostVersion.current,
        subcommands: [RunCommand.self, PollCommand.self, SendCommand.self, SiteCommand.self, CatalogCommand.self, StatusCommand.self, ServeCommand.self, ConsoleCommand.self, DemoCommand.self]
    )

    /// Exit codes (README, "Command line"): 0 ok, 1 some site failed, 2 usage or configuration error.
    static func main() async {
        // Nothing Gatepost creates (spool folders, files, catalog) is readable by others.
        umask(0o077)
        ProcessTuning.configureAllocator()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                Terminal.block(fullMessage(for: error))
                Foundation.exit(0)
            }
            if let exit = error as? ExitCode {
                Foundation.exit(exit.rawValue)
            }
            Terminal.error(fullMessage(for: error))
            // ArgumentParser's usage errors (64) and anything unforeseen count as usage errors.
            Foundation.exit(code == .failure ? 1 : 2)
        }
    }
}

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The folder of site files.", valueName: "dir"))
    var sites: String = ProcessInfo.processInfo.environment["GATEPOST_SITES"] ?? "sites"

    @Option(name: .long, help: ArgumentHelp("The spool folder: catalog and received files.", valueName: "dir"))
    var spool: String = ProcessInfo.processInfo.environment["GATEPOST_SPOOL"] ?? "spool"

    @Flag(name: .shortAndLong, help: "Log each step to standard error.")
    var verbose = false

    @Option(name: .long, help: ArgumentHelp(
        "The catalog: postgres://USER:PASSWORD@HOST:PORT/DATABASE for a PostgreSQL one shared by several nodes (environment: GATEPOST_CATALOG). Default: spool/catalog.sqlite.",
        valueName: "url"
    ))
    var catalog: String? = ProcessInfo.processInfo.environment["GATEPOST_CATALOG"]

    @Option(name: .long, help: ArgumentHelp(
        "With a PostgreSQL catalog: this node's name among the nodes sharing it (environment: GATEPOST_NODE; default: the host name). Records name it as the holder of their files.",
        valueName: "name"
    ))
    var node: String? = ProcessInfo.processInfo.environment["GATEPOST_NODE"]

    /// The node this process is, on a shared catalog.
    var nodeName: String { node ?? ClusterSettings.hostName }

    @Flag(help: "Start a new, empty catalog although the spool holds received files (the catalog was lost and there is no backup: every message still on a server is fetched again).")
    var newCatalog = false

    func bootstrapLogging() {
        // Quiet by default: commands print their own results and one line per error.
        Terminal.bootstrapLogging(level: verbose ? .info : .error)
    }

    var absoluteSpool: String {
        URL(fileURLWithPath: spool).standardizedFileURL.path
    }
}

/// An operator-facing failure: the message is printed as is, with the exit code given.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    var exitCode: Int32

    static func configuration(_ message: String) -> CommandFailure { CommandFailure(description: message, exitCode: 2) }
}

func fail(_ failure: CommandFailure) -> ExitCode {
    Terminal.error(failure.description)
    return ExitCode(failure.exitCode)
}
