import Foundation
import Hummingbird
import HummingbirdAuth
import Testing
import Yams
@testable import GatepostConsole

/// docs/openapi.yaml is the API's documentation: every route the server has is in it, and
/// nothing in it is missing from the server.
@Suite struct OpenAPIDocumentTests {
    static var document: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/openapi.yaml").path
    }

    @Test func theDocumentAndTheServerHaveTheSameRoutes() throws {
        let text = try String(contentsOfFile: Self.document, encoding: .utf8)
        let yaml = try #require(try Yams.load(yaml: text) as? [String: Any])
        #expect(yaml["openapi"] as? String == "3.1.0")
        let paths = try #require(yaml["paths"] as? [String: Any])
        var documented = Set<String>()
        for (path, value) in paths {
            let operations = try #require(value as? [String: Any])
            for method in operations.keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        let fixture = try ConsoleFixture()
        let router = ConsoleServer.router(fixture.environment, sessions: MemoryPersistDriver())
        let served = Set(router.routes.map { route -> String in
            // `:name` in the router is `{name}` in OpenAPI.
            let path = route.path.description.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
            return "\(route.method) /" + path.joined(separator: "/")
        }.filter { $0.contains(" /api/") || $0.hasSuffix(" /metrics") })
        #expect(served == documented, "served but not documented: \(served.subtracting(documented).sorted()); documented but not served: \(documented.subtracting(served).sorted())")
    }
}
