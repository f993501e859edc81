import Foundation
import GatepostCatalog

/// Which of the other nodes' work this node takes up, with several nodes on one catalog: a
/// transfer (its delivery, its acknowledgment) whose node is not alive (killed, stopped, or
/// gone for good) when its file reads here, as it does when every node's spool is on one shared
/// file system. With a spool per machine the file does not read here, and the work waits for
/// its node. Its own work always; work that names no node, only on a single node. What a node
/// takes up it claims in the catalog first (deliveries, outbox entries), so that two survivors
/// never both do it.
///
/// The live nodes are read once, when the first other node's work is met (a round with only
/// its own work asks nothing more of the catalog).
struct NodeTakeOver {
    let catalog: any Catalog
    /// This node; nil on a single node (everything is its own).
    let node: String?
    private var liveNodes: Set<String>?
    private var asked = false

    init(catalog: any Catalog, node: String?) {
        self.catalog = catalog
        self.node = node
    }

    /// Whether this node does the work of a transfer `holder` received, whose file is `file`.
    mutating func includes(_ holder: String?, file: String?) async -> Bool {
        guard let node else { return true }
        guard let holder else { return false }
        if holder == node { return true }
        if !asked {
            asked = true
            // Unreadable node list: nothing of the others is taken (they may be alive).
            let now = Date()
            liveNodes = (try? await catalog.clusterNodes()).map { Set($0.filter { $0.isAlive(at: now) }.map(\.name)) }
        }
        guard let liveNodes, !liveNodes.contains(holder), let file else { return false }
        return await Spool.isReadable(file)
    }
}
