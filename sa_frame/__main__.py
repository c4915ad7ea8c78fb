from sa_frame.cli.app import console_main

if __name__ == "__main__":
    console_main()
