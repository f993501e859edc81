import GatepostCatalog
import Logging
import ServiceLifecycle

/// Keeps the catalog's search index caught up (``SearchIndexing``), apart from the polls whose
/// commits add transfers: a batch at a time until nothing is left, then a look every
/// `interval`. Runs in the daemon and in `gatepost serve`; a search is exact without it, only
/// slower over what is not indexed yet.
public struct SearchIndexer: Service {
    let catalog: any SearchIndexing
    let interval: Duration
    let batch: Int
    let logger: Logger

    public init(catalog: any SearchIndexing, interval: Duration = .seconds(5), batch: Int = 2000, logger: Logger) {
        self.catalog = catalog
        self.interval = interval
        self.batch = batch
        self.logger = logger
    }

    /// Indexes what is not indexed yet, a batch per transaction; returns how many.
    public func catchUp() async throws -> Int {
        var total = 0
        while !Task.isShuttingDownGracefully {
            let indexed = try await catalog.indexForSearch(limit: batch)
            total += indexed
            guard indexed == batch else { break }
        }
        return total
    }

    public func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                _ = try await catchUp()
            } catch {
                // Searches stay right without it; the next look tries again.
                logger.warning("search index not updated", metadata: ["reason": "\(error)"])
            }
            let interval = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
