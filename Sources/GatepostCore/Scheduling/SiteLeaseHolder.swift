import Foundation
import GatepostCatalog
import Logging

/// A site's lease around its poll, for nodes sharing a catalog: claimed before the poll,
/// renewed a third of the way through the lease time while it runs, released after. The
/// daemon's polls and a one-shot `gatepost poll` on the shared catalog both hold it, so two
/// nodes never poll a site at once (and if they did, the catalog's uniqueness still keeps each
/// message to one record).
public struct SiteLeaseHolder: Sendable {
    public var catalog: any Catalog
    public var node: String
    public var leaseTime: Duration
    public var logger: Logger

    public init(catalog: any Catalog, node: String, leaseTime: Duration, logger: Logger) {
        self.catalog = catalog
        self.node = node
        self.leaseTime = leaseTime
        self.logger = logger
    }

    /// Runs `body` while holding `site`'s lease and returns what it returned; nil, without
    /// running it, when another node holds the lease. Throws the catalog's error when the
    /// lease cannot be asked for (nothing is polled then either).
    public func whileHolding<Result: Sendable>(_ site: String, _ body: @escaping @Sendable () async -> Result) async throws -> Result? {
        guard try await claim(site) else { return nil }
        let siteLogger = {
            var siteLogger = logger
            siteLogger[metadataKey: "site"] = "\(site)"
            return siteLogger
        }()
        let result = await withTaskGroup(of: Result?.self) { group in
            group.addTask { await body() }
            group.addTask { [self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: leaseTime / 3)
                    guard !Task.isCancelled else { break }
                    if (try? await claim(site)) == false {
                        siteLogger.error("lost the lease of the site while polling it (another node took it over)")
                    }
                }
                return nil
            }
            var result: Result?
            for await finished in group {
                if let finished {
                    result = finished
                    group.cancelAll()
                }
            }
            return result
        }
        try? await catalog.releaseSite(site, node: node)
        return result
    }

    /// Takes or renews the lease: true when held, false when another node holds it.
    private func claim(_ site: String) async throws -> Bool {
        let now = Date()
        return try await catalog.claimSite(site, node: node, now: now, until: now.addingTimeInterval(leaseTime.timeInterval))
    }
}
