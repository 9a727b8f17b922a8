"""PyInstaller entry point for the single-file lyrad binary."""

from appliance.cli import main

if __name__ == "__main__":
    main()
