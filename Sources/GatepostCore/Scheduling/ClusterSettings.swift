import Foundation
import GatepostCatalog

/// A daemon that shares its catalog (PostgreSQL) with other nodes: its name, how long its
/// heartbeat and its site leases last, and where its console is. The node beats once a second
/// (each reload look), polls only the sites ``SiteAssignment`` gives it among the live nodes,
/// and holds a site's lease for the length of a poll, renewed a third of the way through; a
/// node that dies is taken over by the others once its heartbeat and leases expire.
public struct ClusterSettings: Sendable {
    public var node: String
    /// This run of the node (``ClusterNode/instance``).
    public var instance: String
    public var leaseTime: Duration
    public var consoleURL: String?

    /// `gatepost run --lease-time`'s default, and the lease a one-shot `gatepost poll` takes.
    public static let defaultLeaseTime: Duration = .seconds(60)

    public init(node: String, leaseTime: Duration = defaultLeaseTime, consoleURL: String? = nil, instance: String = UUID().uuidString) {
        self.node = node
        self.leaseTime = leaseTime
        self.consoleURL = consoleURL
        self.instance = instance
    }

    /// The node's default name: the host's, so that a restarted node is the same node (its
    /// records name it as the holder of their files).
    public static var hostName: String { ProcessInfo.processInfo.hostName }

    func heartbeat(startedAt: Date, at now: Date) -> ClusterNode {
        ClusterNode(
            name: node, instance: instance, startedAt: startedAt, heartbeatAt: now,
            expiresAt: now.addingTimeInterval(leaseTime.timeInterval), consoleURL: consoleURL
        )
    }

    /// The sites of `sites` this node polls while `liveNodes` are alive. Before its first
    /// heartbeat is answered a node knows of no one, itself included: it polls nothing.
    func assigned(_ sites: [RemoteSite], liveNodes: [String]) -> [RemoteSite] {
        guard liveNodes.contains(node) else { return [] }
        return sites.filter { SiteAssignment.owner(of: $0.name, among: liveNodes) == node }
    }
}
