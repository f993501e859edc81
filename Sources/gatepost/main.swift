print("gatepost")
