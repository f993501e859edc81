import Foundation
import GatepostCatalog
import Testing
@testable import GatepostConsole

/// What `gatepost status` and the dashboard say of the nodes sharing a catalog.
@Suite struct NodeStatusTests {
    @Test func liveNodesShareTheSitesAndShowTheLeasesTheyHold() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let nodes = [
            ClusterNode(name: "a", instance: "1", startedAt: now - 600, heartbeatAt: now - 1, expiresAt: now + 59, consoleURL: "https://a:8443"),
            ClusterNode(name: "b", instance: "2", startedAt: now - 600, heartbeatAt: now - 120, expiresAt: now - 60),
            ClusterNode(name: "c", instance: "3", startedAt: now - 600, heartbeatAt: now - 2, expiresAt: now + 58),
        ]
        let leases = [
            SiteLease(site: "s1", node: "a", expiresAt: now + 30),
            SiteLease(site: "s2", node: "b", expiresAt: now - 1),  // expired with its node
            SiteLease(site: "s3", node: "c", expiresAt: now + 30),
        ]
        let sites = (1 ... 100).map { "s\($0)" }
        let status = NodeStatus.all(nodes: nodes, leases: leases, sites: sites, now: now)
        #expect(status.map(\.name) == ["a", "b", "c"])
        #expect(status.map(\.alive) == [true, false, true])
        #expect(status[1].assignedSites == 0, "a gone node is given nothing")
        #expect(status[0].assignedSites + status[2].assignedSites == 100)
        #expect(status[0].assignedSites == sites.filter { SiteAssignment.owner(of: $0, among: ["a", "c"]) == "a" }.count)
        #expect(status.map(\.polling) == [["s1"], [], ["s3"]])
        #expect(status[0].consoleURL == "https://a:8443")
    }
}
