from sa_frame.cli.app import main

if __name__ == "__main__":
    main()
