import GatepostCatalog
import GatepostPostgres

/// A catalog named by a URL (`--catalog`, GATEPOST_CATALOG): PostgreSQL, shared by nodes.
enum CatalogLocation {
    static func open(_ location: String) async throws -> any Catalog {
        guard location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") else {
            throw CommandFailure.configuration("--catalog must be a postgres:// URL (without it, the catalog is spool/catalog.sqlite)")
        }
        return try await PostgresCatalog.connect(url: location)
    }
}
