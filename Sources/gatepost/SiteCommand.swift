import ArgumentParser
import Foundation
import GatepostCore

struct SiteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "site",
        abstract: "Inspect Remote Site definitions.",
        subcommands: [List.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the sites and any site file that cannot be used.")

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let directory = try Runtime.loadSites(options)
            var table = TextTable(headers: ["NAME", "ENABLED", "SERVER", "SECURITY", "USER", "DELETE", "INTERVAL", "FILE"])
            for site in directory.sites {
                table.rows.append([
                    site.name,
                    site.enabled ? "yes" : "no",
                    "\(site.pop3.host):\(site.pop3.port)",
                    site.pop3.security.rawValue,
                    site.pop3.user,
                    site.poll.deleteAfterRetrieve ? "yes" : "no",
                    Formatting.duration(site.poll.interval),
                    site.sourceFile,
                ])
            }
            print(table.render())
            for error in directory.errors {
                FileHandle.standardError.write(Data("gatepost: unusable site file: \(error.description)\n".utf8))
            }
            if !directory.errors.isEmpty { throw ExitCode(2) }
        }
    }
}
