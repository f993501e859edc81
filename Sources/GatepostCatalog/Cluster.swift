import Foundation
import Synchronization

// Several `gatepost run` nodes on one catalog (PostgreSQL): which nodes are alive, and which
// node polls which site. A node says it is alive (a heartbeat row with an expiry) and takes a
// site for the length of a poll (a lease row with an expiry, renewed while it polls); a node
// that dies stops renewing, and its rows expire. The leases keep two nodes from polling a site
// at once; the catalog's uniqueness (a site's UIDL, a transfer's id) keeps a message from being
// recorded twice even if they did.

/// One `gatepost run` process taking part in the work on a shared catalog.
public struct ClusterNode: Sendable, Hashable, Codable {
    /// The node's name (`--node`, by default the host name): what records name as the holder
    /// of their files.
    public var name: String
    /// This run of the node: a name held by another live run is refused, so two processes
    /// given the same name cannot both believe they hold its leases.
    public var instance: String
    public var startedAt: Date
    public var heartbeatAt: Date
    /// Alive until then unless it beats again.
    public var expiresAt: Date
    /// Where its console listens, if it has one: where another node's console sends a user for
    /// a file this node holds.
    public var consoleURL: String?

    public init(name: String, instance: String, startedAt: Date, heartbeatAt: Date, expiresAt: Date, consoleURL: String? = nil) {
        self.name = name
        self.instance = instance
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.expiresAt = expiresAt
        self.consoleURL = consoleURL
    }

    public func isAlive(at now: Date) -> Bool { expiresAt > now }
}

/// A node's hold on a site: it polls the site until `expiresAt`, unless it renews.
public struct SiteLease: Sendable, Hashable, Codable {
    public var site: String
    public var node: String
    public var expiresAt: Date

    public init(site: String, node: String, expiresAt: Date) {
        self.site = site
        self.node = node
        self.expiresAt = expiresAt
    }
}

public enum ClusterError: Error, Equatable, CustomStringConvertible {
    case nodeNameInUse(name: String, until: Date)

    public var description: String {
        switch self {
        case .nodeNameInUse(let name, let until):
            "another running gatepost is node \(name) on this catalog (its heartbeat holds the name until "
                + "\(ISO8601DateFormatter().string(from: until))): give this one another name with --node, "
                + "or stop the other first"
        }
    }
}

/// Nodes and site leases. Each method is one transaction; the claims are compare-and-sets that
/// exactly one of any number of concurrent callers (in any process) wins.
public protocol LeaseStore: Sendable {
    /// `node` is alive until its `expiresAt`: its row is written, unless another instance holds
    /// the name and that row has not expired at `node.heartbeatAt` (then it throws
    /// ``ClusterError/nodeNameInUse(name:until:)`` and writes nothing). Returns the nodes alive
    /// at `node.heartbeatAt` (their `expiresAt` after it), by name.
    func heartbeat(_ node: ClusterNode) async throws -> [ClusterNode]
    /// A node stopping: its row (if it is still `instance`'s) and its site leases go, so that
    /// the others take its sites at once rather than when the leases expire.
    func leave(node name: String, instance: String) async throws
    /// Takes `site` for `node` until `until` if no other node holds it at `now` (no lease, its
    /// own, or one that has expired). True when `node` holds it now; renewing is claiming again.
    func claimSite(_ site: String, node: String, now: Date, until: Date) async throws -> Bool
    /// Ends `node`'s lease of `site`, if it holds it.
    func releaseSite(_ site: String, node: String) async throws
    /// Every lease, expired or not, by site.
    func siteLeases() async throws -> [SiteLease]
    /// Every node row, alive or not (a dead node's stays until it starts again), by name.
    func clusterNodes() async throws -> [ClusterNode]
}

/// Which live node polls which site: rendezvous hashing (each site goes to the node with the
/// highest hash of the pair). Every node computes the same answer from the same list of live
/// nodes, sites spread evenly, and when a node dies or joins only the sites it held or takes
/// move. The hash is FNV-1a, fixed across processes and builds (Swift's `Hasher` is seeded per
/// process, which would give every node another answer).
public enum SiteAssignment {
    public static func owner(of site: String, among nodes: [String]) -> String? {
        var best: (node: String, weight: UInt64)?
        for node in nodes {
            let weight = mix(fnv1a(site, node))
            if let current = best, weight < current.weight || (weight == current.weight && node > current.node) { continue }
            best = (node, weight)
        }
        return best?.node
    }

    static func fnv1a(_ site: String, _ node: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in site.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ 0) &* 0x100_0000_01b3
        for byte in node.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    /// A finalizer (splitmix64's): FNV's low bits alone spread short, similar names poorly.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// The two compare-and-sets of ``LeaseStore``, as rules: the in-memory store applies them, the
/// SQL stores say the same in their `WHERE` clauses.
public enum LeaseRules {
    /// Whether `node` may take a site whose lease is `existing` at `now`.
    public static func mayClaim(_ existing: SiteLease?, node: String, now: Date) -> Bool {
        guard let existing else { return true }
        return existing.node == node || existing.expiresAt <= now
    }

    /// Whether `beat` may write its node's row over `existing`.
    public static func mayBeat(_ existing: ClusterNode?, _ beat: ClusterNode) -> Bool {
        guard let existing else { return true }
        return existing.instance == beat.instance || existing.expiresAt <= beat.heartbeatAt
    }
}

/// The lease store kept in memory: the twin of the SQL ones, for tests.
final class InMemoryLeases: Sendable {
    private struct State {
        var nodes: [String: ClusterNode] = [:]
        var leases: [String: SiteLease] = [:]
    }

    private let state = Mutex(State())

    func heartbeat(_ node: ClusterNode) throws -> [ClusterNode] {
        try state.withLock { state in
            let existing = state.nodes[node.name]
            guard LeaseRules.mayBeat(existing, node) else {
                throw ClusterError.nodeNameInUse(name: node.name, until: existing?.expiresAt ?? node.expiresAt)
            }
            state.nodes[node.name] = node
            return state.nodes.values.filter { $0.isAlive(at: node.heartbeatAt) }.sorted { $0.name < $1.name }
        }
    }

    func leave(node name: String, instance: String) {
        state.withLock { state in
            guard state.nodes[name]?.instance == instance else { return }
            state.nodes[name] = nil
            state.leases = state.leases.filter { $0.value.node != name }
        }
    }

    func claimSite(_ site: String, node: String, now: Date, until: Date) -> Bool {
        state.withLock { state in
            guard LeaseRules.mayClaim(state.leases[site], node: node, now: now) else { return false }
            state.leases[site] = SiteLease(site: site, node: node, expiresAt: until)
            return true
        }
    }

    func releaseSite(_ site: String, node: String) {
        state.withLock { state in
            if state.leases[site]?.node == node { state.leases[site] = nil }
        }
    }

    func siteLeases() -> [SiteLease] {
        state.withLock { $0.leases.values.sorted { $0.site < $1.site } }
    }

    func clusterNodes() -> [ClusterNode] {
        state.withLock { $0.nodes.values.sorted { $0.name < $1.name } }
    }
}
