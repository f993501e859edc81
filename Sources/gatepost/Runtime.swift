import Foundation
import GatepostCatalog
import ArgumentParser
import GatepostCore

/// Loading what commands share: the sites folder, the spool and its catalog.
enum Runtime {
    static func loadSites(_ options: GlobalOptions) throws -> SiteDirectory {
        do {
            return try SiteLoader().loadDirectory(options.sites)
        } catch let error as SiteConfigurationError {
            throw CommandFailure.configuration(error.description)
        }
    }

    /// The sites named, or all enabled ones when none are named. A named site whose file is
    /// broken is a configuration error naming the file, line and field.
    static func selectSites(_ names: [String], from directory: SiteDirectory, states: [String: SiteState] = [:]) throws -> [RemoteSite] {
        if names.isEmpty {
            return directory.sites.filter { $0.isEnabled(states[$0.name]) }
        }
        return try names.map { name in
            if let site = directory.site(named: name) { return site }
            let errors = directory.errors.filter { ($0.file as NSString).lastPathComponent.hasPrefix(name + ".") }
            if !errors.isEmpty {
                // Every error of the file, on the one line an error gets.
                throw CommandFailure.configuration(errors.map(\.description).joined(separator: "; "))
            }
            let known = directory.sites.map(\.name).sorted().joined(separator: ", ")
            throw CommandFailure.configuration("no site named `\(name)` (known: \(known.isEmpty ? "none" : known))")
        }
    }

    /// One named site, or the command fails with the configuration error (exit 2).
    /// Who acts from the command line, for the audit trail: `cli:<user name>`.
    static var commandLineActor: String {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return "cli:uid-\(geteuid())" }
        return "cli:" + String(cString: name)
    }

    static func site(named name: String, _ options: GlobalOptions) throws -> RemoteSite {
        let directory = try loadSites(options)
        do {
            guard let found = try selectSites([name], from: directory).first else { throw ExitCode(2) }
            return found
        } catch let failure as CommandFailure {
            throw fail(failure)
        }
    }

    /// The spool and its catalog: `spool/catalog.sqlite`, or the PostgreSQL one `--catalog`
    /// names (shared by several nodes, each with its own spool).
    static func openSpool(_ options: GlobalOptions) async throws -> (Spool, any Catalog) {
        let spool: Spool
        do {
            spool = try Spool(root: options.absoluteSpool)
        } catch {
            throw CommandFailure(description: "\(error)", exitCode: 1)
        }
        return (spool, try await openCatalog(options.catalog, spool: spool, mayStartAnew: options.newCatalog || !spool.holdsReceivedFiles))
    }

    static func openCatalog(_ location: String?, spool: Spool, mayStartAnew: Bool) async throws -> any Catalog {
        do {
            guard let location, !location.isEmpty else {
                return try SQLiteCatalog(path: spool.catalogPath, mayStartAnew: mayStartAnew)
            }
            return try await CatalogLocation.open(location)
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure(description: "\(error)", exitCode: 1)
        }
    }
}
