from sa_frame.core.cli import main

if __name__ == "__main__":
    main()
