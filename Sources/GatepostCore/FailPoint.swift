import Foundation

/// Named points where a test can make the process die on the spot (SIGKILL), to prove that a
/// crash there loses and doubles nothing. Armed only through the environment:
/// `GATEPOST_FAILPOINTS=deliver.after-link` (comma-separated). Unset in production, each check
/// is one dictionary lookup of a set read once at start.
public enum FailPoint {
    private static let armed: Set<String> = {
        guard let value = ProcessInfo.processInfo.environment["GATEPOST_FAILPOINTS"] else { return [] }
        return Set(value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    }()

    public static func hit(_ name: String) {
        guard !armed.isEmpty, armed.contains(name) else { return }
        kill(getpid(), SIGKILL)
    }
}
